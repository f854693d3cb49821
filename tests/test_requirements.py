"""The runtime requirements against what the code imports (read with ast, nothing is imported).

Every third-party module that ``mtu_toolkit/``, ``tools/`` or ``benchmarks/`` imports (or locates
with ``importlib.util.find_spec`` / ``importlib.import_module``) must come from a distribution in
``requirements.txt`` (torch: from ``tools/install.sh`` / ``setup.py``), or be an optional module
of ``OPTIONAL`` whose every import is guarded by ``except ImportError`` with a message; and every
listed distribution must be used. Requirements are ranges, and the tested environment is in them.
"""
import ast
import importlib.metadata
import os
import os.path as osp
import re
import sys
from collections import defaultdict

import pytest
from packaging.requirements import Requirement

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCANNED = ('mtu_toolkit', 'tools', 'benchmarks')
#: installed by tools/install.sh (only when missing) and required by setup.py, not listed
NOT_LISTED = {'torch'}
#: module -> what it is for; imported only inside ``try: ... except ImportError`` (with a message
#: that says what to install) or probed with ``find_spec``
OPTIONAL = {'onnx': 'tools/export.py --onnx (in requirements-tests.txt for tests/test_export.py)',
            'tensorboard': 'TensorBoard logs of tools/train.py when it is installed',
            'onnxruntime': 'a peer of benchmarks/peers_cpu.py (requirements-benchmarks.txt)',
            'openvino': 'a peer of benchmarks/peers_cpu.py (requirements-benchmarks.txt)'}
FIRST_PARTY = {'mtu_toolkit'}


def normalise(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def read_requirements(name):
    with open(osp.join(ROOT, name)) as f:
        lines = [ln.split('#')[0].strip() for ln in f]
    return [Requirement(ln) for ln in lines if ln]


def python_files():
    for top in SCANNED:
        for dirpath, dirnames, filenames in os.walk(osp.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d != '__pycache__']
            yield from (osp.join(dirpath, f) for f in filenames if f.endswith('.py'))


def local_names():
    """Top-level names of the scanned trees: scripts import their siblings by name."""
    names = set(FIRST_PARTY)
    for path in python_files():
        names.add(osp.splitext(osp.basename(path))[0])
        names.add(osp.basename(osp.dirname(path)))
    return names


class ImportCollector(ast.NodeVisitor):
    """(module, line, guarded) of each absolute import and each find_spec/import_module('x').

    Guarded: inside ``try`` with ``except ImportError``, or a ``find_spec`` probe (its caller
    handles the module's absence).
    """

    def __init__(self):
        self.found, self._guards = [], [False]

    def _add(self, module, node, guarded=False):
        self.found.append((module.split('.')[0], node.lineno, guarded or self._guards[-1]))

    def visit_Try(self, node):
        catches = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            catches.update(getattr(t, 'id', None) for t in types)
        self._guards.append(self._guards[-1] or bool(catches & {'ImportError',
                                                              'ModuleNotFoundError'}))
        for stmt in node.body:
            self.visit(stmt)
        self._guards.pop()
        for stmt in node.handlers + node.orelse + node.finalbody:
            self.visit(stmt)

    visit_TryStar = visit_Try

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node):
        if node.level == 0:
            self._add(node.module, node)

    def visit_Call(self, node):
        name = getattr(node.func, 'attr', getattr(node.func, 'id', None))
        if (name in ('find_spec', 'import_module', '__import__') and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                and not node.args[0].value.startswith('.')):
            self._add(node.args[0].value, node, guarded=name == 'find_spec')
        self.generic_visit(node)


def third_party_imports():
    """{module: [(relative path, line, guarded)]} of the modules from outside the repository."""
    stdlib, local = set(sys.stdlib_module_names) | set(sys.builtin_module_names), local_names()
    found = defaultdict(list)
    for path in python_files():
        with open(path) as f:
            collector = ImportCollector()
            collector.visit(ast.parse(f.read(), path))
        for module, line, guarded in collector.found:
            if module not in stdlib and module not in local:
                found[module].append((osp.relpath(path, ROOT), line, guarded))
    return found


def module_distributions():
    """{top-level module: {normalised distribution names}} of the installed distributions."""
    return {module: {normalise(d) for d in dists}
            for module, dists in importlib.metadata.packages_distributions().items()}


def test_collector_sees_lazy_guarded_and_located_imports():
    source = ('import os, numpy.linalg\nfrom . import x\n'
              'def f():\n    from skimage import data\n'
              'try:\n    import onnx\nexcept (ImportError, OSError):\n    pass\n'
              'try:\n    import yaml\nexcept ValueError:\n    pass\n'
              'importlib.util.find_spec("skvideo")\nimportlib.import_module("mmcv.ops")\n')
    collector = ImportCollector()
    collector.visit(ast.parse(source))
    assert collector.found == [('os', 1, False), ('numpy', 1, False), ('skimage', 4, False),
                               ('onnx', 6, True), ('yaml', 10, False), ('skvideo', 13, True),
                               ('mmcv', 14, False)]


def test_every_third_party_import_is_a_requirement():
    listed = {normalise(r.name) for r in read_requirements('requirements.txt')} | NOT_LISTED
    providers = module_distributions()
    problems = []
    for module, uses in sorted(third_party_imports().items()):
        where = ', '.join(f'{path}:{line}' for path, line, _ in uses)
        if module in OPTIONAL:
            problems += [f'{module} ({path}:{line}) is optional but imported without '
                         f'`except ImportError`' for path, line, guarded in uses if not guarded]
        elif module not in providers and all(guarded for *_, guarded in uses):
            problems.append(f'{module} ({where}) is optional (guarded) but not in OPTIONAL, '
                            f'which says what it is for')
        elif module not in providers:
            problems.append(f'{module} ({where}) is not installed here and not in '
                            f'requirements.txt')
        elif not providers[module] & listed:
            problems.append(f'{module} ({where}) comes from {sorted(providers[module])}, '
                            f'none of them in requirements.txt')
    assert not problems, '\n'.join(problems)


def test_every_requirement_is_used():
    used = set(third_party_imports())
    providers = module_distributions()
    unused = [r.name for r in read_requirements('requirements.txt')
              if not any(normalise(r.name) in providers.get(m, ()) for m in used)]
    assert not unused, f'requirements.txt lists distributions nothing imports: {unused}'


@pytest.mark.parametrize('name', ['requirements.txt', 'requirements-tests.txt'])
def test_requirements_are_ranges_that_hold_the_tested_versions(name):
    for req in read_requirements(name):
        ops = {spec.operator for spec in req.specifier}
        # a lower bound and an upper bound, never a pin: a neighbouring release is left alone
        assert ops == {'>=', '<'}, f'{name}: {req} is not a range >=low,<high'
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f'{name}: {req.name} is not installed '
                        '(bash tools/run_tests.sh installs it)')
        assert req.specifier.contains(version, prereleases=True), \
            f'{name}: the tested {req.name} {version} is outside {req.specifier}'
