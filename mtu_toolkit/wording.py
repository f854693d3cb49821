"""Wording of the toolkit's one-line messages (standard library only)."""


def plural(n, noun, suffix='s'):
    """``'1 tensor'`` / ``'3 tensors'``; ``suffix`` for nouns such as ``'mismatch'`` (``'es'``)."""
    return f'{n} {noun}{suffix * (n != 1)}'
