"""The error a dataset on disk raises when the toolkit cannot read it as it is."""


class DatasetError(ValueError):
    """Frames, an LMDB, its ``meta_info.txt`` or a tree's layout that the toolkit cannot read
    as they are (a truncated database, frames without partners, sequences shorter than a
    clip, ...).

    The message names the file or folder at fault. It is the user's to fix, not a bug, so the
    tools print it as one ``error:`` line without a traceback (a ``ValueError`` subclass, so
    that callers catching ``ValueError`` keep working).
    """
