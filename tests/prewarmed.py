"""``subprocess.run([sys.executable, SCRIPT, ...])`` for the tests, without paying for the
imports of torch and mmengine on every run.

A tool started by a test spends most of its time importing torch and mmengine: about 5 s of a
6-9 s run on a 2-core CPU, and the suite starts a few hundred of them. :func:`run` asks a
server process that has imported those libraries once (and nothing of the toolkit) to fork a
child for each run. The child takes the run's working directory, environment, ``sys.path``,
arguments and standard streams, then runs the script (or ``-c`` code) as ``__main__``: it is a
process of its own, with its own exit code, files and signals, and it imports the toolkit
itself, so a tool that forgets an import still fails. Its exit runs what Python's would (the
``atexit`` handlers, the flush of the standard streams).

A run the server cannot stand in for goes to :func:`subprocess.run` unchanged: another
interpreter or interpreter options (``-m``, ``-X``, a venv's python), arguments given as
bytes, output not captured. A server is kept per environment (besides the variables of
:data:`PER_RUN`: the locale, thread counts and the like are read when a process starts), the
:data:`MAX_SERVERS` last used; they end when the test session does.

Standard library only until the server imports its libraries.
"""
import atexit
import json
import os
import select
import subprocess
import sys
import tempfile

#: variables a run may set differently from its server: read after start-up, or applied by
#: the child itself (PYTHONPATH becomes the child's sys.path)
PER_RUN = frozenset({'PYTHONPATH', 'PYTEST_CURRENT_TEST', 'MTU_DEBUG'})

#: what a server imports before it forks: the slow third-party imports every tool makes
PRELOAD = ('torch', 'numpy', 'cv2', 'lmdb', 'mmengine', 'mmengine.runner', 'mmengine.model',
           'mmengine.optim', 'mmengine.evaluator', 'mmengine.dataset', 'mmengine.hooks',
           'mmengine.visualization', 'mmcv')

#: servers kept at once (each holds ~0.5 GB)
MAX_SERVERS = 4

_servers = {}  # environment -> server, the last used last


def run(args, *, cwd=None, env=None, capture_output=False, text=False, timeout=None,
        input=None, check=False, **kwargs):
    """Like :func:`subprocess.run` (same arguments and result), forked from a server that has
    imported torch and mmengine when ``args`` is ``[sys.executable, SCRIPT_OR_-c, ...]``."""
    args = [os.fspath(a) for a in args]
    env = dict(os.environ if env is None else env)
    if (kwargs or not capture_output or len(args) < 2 or args[0] != sys.executable
            or not all(isinstance(a, str) for a in args)
            or (args[1].startswith('-') and args[1] != '-c') or sys.platform != 'linux'):
        return subprocess.run(args, cwd=cwd, env=env, capture_output=capture_output, text=text,
                              timeout=timeout, input=input, check=check, **kwargs)
    key = tuple(sorted((k, v) for k, v in env.items() if k not in PER_RUN))
    server = _servers.pop(key, None)
    if server is None or server.poll() is not None:
        while len(_servers) >= MAX_SERVERS:
            _stop_server(_servers.pop(next(iter(_servers))))
        server = _start_server(dict(key))
    _servers[key] = server
    with tempfile.TemporaryDirectory(prefix='prewarmed-') as tmp:
        paths = {name: os.path.join(tmp, name) for name in ('stdin', 'stdout', 'stderr')}
        data = input if input is None or isinstance(input, bytes) else input.encode()
        with open(paths['stdin'], 'wb') as f:
            f.write(data or b'')
        request = dict(args=args, cwd=os.fspath(cwd) if cwd is not None else os.getcwd(),
                       env=env, **paths)
        server.stdin.write(json.dumps(request) + '\n')
        server.stdin.flush()
        pid = json.loads(_read_line(server, None))['pid']
        try:
            code = json.loads(_read_line(server, timeout))['code']
            timed_out = False
        except TimeoutError:
            os.kill(pid, 9)
            code = json.loads(_read_line(server, None))['code']
            timed_out = True
        out, err = (open(paths[name], 'rb').read() for name in ('stdout', 'stderr'))
    if text:
        out, err = out.decode(), err.decode()
    if timed_out:
        raise subprocess.TimeoutExpired(args, timeout, out, err)
    proc = subprocess.CompletedProcess(args, code, out, err)
    if check:
        proc.check_returncode()
    return proc


def _start_server(env):
    env = {k: v for k, v in env.items() if k != 'PYTHONPATH'}
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__)))
    line = _read_line(server, 300)
    if line.strip() != 'ready':
        raise RuntimeError(f'the prewarmed Python server did not start: {line!r}')
    atexit.register(_stop_server, server)
    return server


def _stop_server(server):
    if server.poll() is None:
        server.stdin.close()
        server.wait()


def _read_line(server, timeout):
    ready, _, _ = select.select([server.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError
    line = server.stdout.readline()
    if not line:
        raise RuntimeError('the prewarmed Python server ended')
    return line


# ---------------------------------------------------------------------------------------------
# the server and its children


def _serve():
    import importlib
    import threading
    for name in PRELOAD:
        importlib.import_module(name)
    # fork copies only the calling thread: nothing may have started another (none of these
    # imports does; a pool that did would be missing in every child)
    assert threading.active_count() == 1, threading.enumerate()
    base_path = sys.path[1:]  # without this file's folder
    requests, replies = sys.stdin, sys.stdout
    replies.write('ready\n')
    replies.flush()
    while True:
        line = requests.readline()
        if not line:
            return
        request = json.loads(line)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, base_path)  # does not return
        replies.write(json.dumps(dict(pid=pid)) + '\n')
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps(dict(code=os.waitstatus_to_exitcode(status))) + '\n')
        replies.flush()


def _child(request, base_path):
    import runpy
    import signal
    import threading
    code = 1
    try:
        os.setpgid(0, 0)  # a Ctrl-C at the terminal reaches the server, not a run
        for fd, name, flags in ((0, 'stdin', os.O_RDONLY), (1, 'stdout', os.O_WRONLY),
                                (2, 'stderr', os.O_WRONLY)):
            src = os.open(request[name], flags | (os.O_CREAT | os.O_TRUNC if fd else 0))
            os.dup2(src, fd)
            os.close(src)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT
                          else signal.SIG_DFL)
        os.chdir(request['cwd'])
        os.environ.clear()
        os.environ.update(request['env'])
        args = request['args'][1:]
        extra = [p for p in request['env'].get('PYTHONPATH', '').split(os.pathsep) if p]
        if args[0] == '-c':
            sys.argv = ['-c'] + args[2:]
            sys.path[:] = [''] + extra + base_path
            main = {'__name__': '__main__', '__builtins__': __builtins__}
            exec(compile(args[1], '<string>', 'exec'), main)
        else:
            script = os.path.abspath(args[0])
            sys.argv = [args[0]] + args[1:]
            sys.path[:] = [os.path.dirname(script)] + extra + base_path
            runpy.run_path(script, run_name='__main__')
        code = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
    except KeyboardInterrupt as err:
        _print_uncaught(err)
        code = -signal.SIGINT
    except BaseException as err:  # noqa: BLE001 - what Python prints for an uncaught one
        _print_uncaught(err)
    try:
        shutdown = getattr(threading, '_shutdown', None)
        if shutdown is not None:
            shutdown()  # joins the non-daemon threads, as the interpreter's exit does
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream, as at exit
                pass
        if code < 0:  # ended by a signal, as Python does for an uncaught KeyboardInterrupt
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code & 0xFF)


def _print_uncaught(err):
    """The traceback Python prints, without the frames of this file and of runpy."""
    import runpy
    import traceback
    # (runpy's frames are named '<frozen runpy>' where the standard library is frozen)
    ours = {os.path.abspath(__file__), os.path.abspath(runpy.__file__), '<frozen runpy>'}
    tb = err.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename in ours
                              or os.path.abspath(tb.tb_frame.f_code.co_filename) in ours):
        tb = tb.tb_next
    traceback.print_exception(type(err), err, tb)


if __name__ == '__main__':
    _serve()
