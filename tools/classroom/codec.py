"""What crosses from a student's sandboxed kernel to the grader: answers as plain JSON, never code or pickles.

Grading runs in two steps (see :mod:`tools.classroom.grade`). In the sandbox, the student's kernel runs the exercise
cells and then the *recorder* (:data:`RECORDER`, appended as the last cell): it runs every otter test of the notebook
(public and hidden) with each student function wrapped, so that it notes every call the checkers make and what came
back, and notes the value of every other name the tests read. Nothing the recorder does there counts: the answer key
is not in the sandbox, and the tests' verdicts are thrown away. The grader then runs the same tests in its own
process against :func:`replay_env`: values decoded from the record, and functions that answer each recorded call with
its recorded result. So no student code runs where the grades are decided.

Values: ``None``, bool, int, float, str, list, tuple, dict, torch tensors and numpy arrays (of the dtypes in
``DTYPES``, at most ``MAX_ELEMENTS`` numbers each); anything else is recorded as its type's name only.
"""

from __future__ import annotations

# The encoder's source is also pasted into the recorder cell, so it imports only inside functions and refers to
# nothing outside this block.
# --- begin codec ---
DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
MAX_ELEMENTS = 1_000_000  # numbers per tensor or array
MAX_DEPTH = 20  # nesting of lists, tuples and dicts


def encode(value, depth=0):
    """A JSON-able form of ``value`` (see the module's docstring); ``decode(encode(v))`` equals ``v``."""
    import base64
    import sys

    if depth > MAX_DEPTH:
        return {"__other__": "too deeply nested"}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [encode(v, depth + 1) for v in value]
        return items if isinstance(value, list) else {"__tuple__": items}
    if isinstance(value, dict):
        return {"__dict__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Size):
        return {"__tuple__": list(value)}
    if torch is not None and isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        if dtype not in DTYPES or value.numel() > MAX_ELEMENTS:
            return {"__other__": f"tensor of {dtype}, {value.numel()} numbers"}
        flat = value.detach().cpu().contiguous()
        raw = (flat.view(torch.int16) if dtype == "bfloat16" else flat).numpy().tobytes()
        return {"__tensor__": [dtype, list(value.shape), base64.b64encode(raw).decode()]}
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        return encode(value.item(), depth)
    if numpy is not None and isinstance(value, numpy.ndarray):
        dtype = str(value.dtype)
        if dtype not in DTYPES or value.size > MAX_ELEMENTS:
            return {"__other__": f"array of {dtype}, {value.size} numbers"}
        raw = numpy.ascontiguousarray(value).tobytes()
        return {"__ndarray__": [dtype, list(value.shape), base64.b64encode(raw).decode()]}
    return {"__other__": type(value).__name__}


def call_key(name, args, kwargs):
    """The fingerprint of one call ``name(*args, **kwargs)``: a SHA-256 of its encoded arguments."""
    import hashlib
    import json

    text = json.dumps([name, encode(list(args)), encode(dict(sorted(kwargs.items())))], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
# --- end codec ---


class Other:
    """A recorded value the codec does not carry (a function returned by a function, a generator ...)."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __repr__(self) -> str:
        return f"<{self.description}>"


def decode(data, depth: int = 0):
    """The value :func:`encode` encoded. Raises ValueError on anything :func:`encode` does not write."""
    import base64

    import numpy as np
    import torch

    if depth > MAX_DEPTH + 1:
        raise ValueError("too deeply nested")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, depth + 1) for v in data]
    if not (isinstance(data, dict) and len(data) == 1):
        raise ValueError(f"not an encoded value: {str(data)[:80]}")
    (tag, body), = data.items()
    if tag == "__tuple__":
        return tuple(decode(v, depth + 1) for v in body)
    if tag == "__dict__":
        return {_hashable(decode(k, depth + 1)): decode(v, depth + 1) for k, v in body}
    if tag == "__other__":
        return Other(str(body))
    if tag in ("__tensor__", "__ndarray__"):
        dtype, shape, raw = body
        if dtype not in DTYPES or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError(f"bad {tag}: {dtype}, {shape}")
        buffer = base64.b64decode(raw)
        np_dtype = np.int16 if dtype == "bfloat16" else np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        if count > MAX_ELEMENTS or len(buffer) != count * np.dtype(np_dtype).itemsize:
            raise ValueError(f"bad {tag}: {len(buffer)} bytes for shape {shape} of {dtype}")
        array = np.frombuffer(buffer, dtype=np_dtype).reshape(shape).copy()
        if tag == "__ndarray__":
            return array
        tensor = torch.from_numpy(array)
        return tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor
    raise ValueError(f"unknown tag {tag!r}")


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


# Exceptions a replayed call may raise as themselves; any other is raised as a RuntimeError naming its type.
REPLAYED_ERRORS = {e.__name__: e for e in (NotImplementedError, ValueError, TypeError, IndexError, KeyError,
                                           ZeroDivisionError, AttributeError, NameError, AssertionError,
                                           RuntimeError, OverflowError)}


class Replay:
    """A student function, answered from the record: each call returns (or raises) what the student's function did
    on those arguments in the sandbox; a call that was not recorded raises RuntimeError saying so."""

    def __init__(self, name: str, calls: dict[str, dict]) -> None:
        self.__name__, self._calls = name, calls

    def __call__(self, *args, **kwargs):
        call = self._calls.get(call_key(self.__name__, args, kwargs))
        if call is None:
            raise RuntimeError("it did not return on these inputs while your notebook ran (it stopped earlier, hit "
                               "the time limit, or the inputs were changed)")
        if "raised" in call:
            kind, message = (str(x)[:2000] for x in call["raised"])
            error = REPLAYED_ERRORS.get(kind)
            raise error(message) if error else RuntimeError(f"{kind}: {message}")
        return decode(call["out"])


def replay_env(record: dict) -> dict:
    """The names the tests read, rebuilt from a record: ``{name: value or Replay}`` (a name the notebook did not define
    is left out, so otter passes ``None``). Raises ValueError on a malformed record."""
    if not isinstance(record, dict) or not isinstance(record.get("names"), dict) \
            or not isinstance(record.get("calls"), dict):
        raise ValueError("the record is not {'names': {...}, 'calls': {...}}")
    env = {}
    for name, info in record["names"].items():
        kind = info.get("kind") if isinstance(info, dict) else None
        if kind == "function":
            env[name] = Replay(name, record["calls"])
        elif kind == "value":
            env[name] = decode(info.get("value"))
        elif kind != "missing":
            raise ValueError(f"name {name!r}: unknown kind {kind!r}")
    return env


def recorder_source(tests_dir: str, out_path: str, seconds_per_test: int) -> str:
    """The recorder cell: the codec above, then every test of ``tests_dir`` run once with the student's functions
    wrapped; the record is written to ``out_path`` (atomically) after each test."""
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    codec = source.split("# --- begin codec ---\n", 1)[1].split("# --- end codec ---", 1)[0]
    return f'''def _qlora_record(namespace):
    import glob, inspect, json, os, signal
    from otter.test_files.exception_test import ExceptionTestFile
{_indent(codec)}
    record = {{"names": {{}}, "calls": {{}}}}

    def save():
        with open({out_path!r} + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace({out_path!r} + ".tmp", {out_path!r})

    class Recorded:
        def __init__(self, name, fn):
            self.__name__, self._fn = name, fn

        def __call__(self, *args, **kwargs):
            key = call_key(self.__name__, args, kwargs)
            try:
                out = self._fn(*args, **kwargs)
            except Exception as err:
                record["calls"][key] = {{"raised": [type(err).__name__, str(err)[:2000]]}}
                raise
            record["calls"][key] = {{"out": encode(out)}}
            return out

    class TimeUp(BaseException):
        pass

    armed = [False]

    def alarm(signum, frame):
        if armed[0]:
            armed[0] = False
            raise TimeUp()

    signal.signal(signal.SIGALRM, alarm)
    for path in sorted(glob.glob({tests_dir!r} + "/*.py")):
        for case in ExceptionTestFile.from_file(path).test_cases:
            env = {{}}
            for name in inspect.signature(case.body.test_func).parameters:
                if name not in namespace:
                    record["names"][name] = {{"kind": "missing"}}
                elif callable(namespace[name]) and not isinstance(namespace[name], type):
                    record["names"][name] = {{"kind": "function"}}
                    env[name] = Recorded(name, namespace[name])
                else:
                    record["names"][name] = {{"kind": "value", "value": encode(namespace[name])}}
                    env[name] = namespace[name]
            armed[0] = True
            signal.alarm({seconds_per_test})
            try:
                case.body.call_func(env)
            except BaseException:
                pass
            finally:
                armed[0] = False
                signal.alarm(0)
            save()
    save()


_qlora_record(globals())'''


def _indent(text: str) -> str:
    return "\n".join(("    " + line) if line.strip() else "" for line in text.splitlines())
