"""Dataset pickles go through the restricted unpickler (issue 11.5): plain data of every protocol loads,
a crafted file whose ``__reduce__`` would run a shell command is refused and nothing runs — for the
generic loader, the MA-52 pose pickle and the iMiGUE label pickle."""
import collections
import os
import pickle
import subprocess

import numpy as np
import pytest

from mdn_fast.data import safe_pickle
from mdn_fast.data.imigue import IMiGUEDataset, IMiGUEFormatError, read_labels
from mdn_fast.data.ma52 import AnnotationError, MA52Dataset

from tests._ma52_release import make_release


class _Touch:
    """Unpickling this runs ``os.system('touch <marker>')`` with plain pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def test_plain_data_of_every_protocol_loads():
    obj = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "view": np.arange(12.0).reshape(3, 4)[:, ::2],
           "f": np.float32(1.5), "i": np.int64(-3), "dt": np.dtype("<f4"), "t": (1, "x", None, True),
           "o": collections.OrderedDict(x=[1, 2]), "b": b"\x00\xff", "s": {1, 2}, "fs": frozenset({3}),
           "c": 1 + 2j, "ba": bytearray(b"ab"), "u8": np.zeros((2, 0, 3), np.uint8),
           "objarr": np.array([1, "a", None], dtype=object)}
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        got = safe_pickle.loads(pickle.dumps(obj, protocol=proto))
        assert got.keys() == obj.keys()
        for k, v in obj.items():
            if isinstance(v, np.ndarray):
                assert got[k].dtype == v.dtype and got[k].shape == v.shape
                assert np.array_equal(got[k], v) if v.dtype != object else list(got[k]) == list(v)
            else:
                assert got[k] == v and type(got[k]) is type(v), (proto, k)


def test_numpy1_module_names_accepted():
    """numpy 1.x wrote numpy.core.multiarray; numpy 2 reads it as numpy._core (no warning dance)."""
    data = pickle.dumps(np.arange(3.0), protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    np.testing.assert_array_equal(safe_pickle.loads(data), np.arange(3.0))


@pytest.mark.parametrize("proto", [0, 2, 4, 5])
def test_crafted_pickle_runs_nothing(tmp_path, proto):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"annotations": [_Touch(marker)]}, protocol=proto))
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"evil\.pkl: refused to unpickle: the file references "
                                                            r"(posix|nt|os)\.system.*nothing from this file was executed"):
        safe_pickle.load(p)
    assert not marker.exists()
    pickle.loads(p.read_bytes())          # control: plain pickle would have run it
    assert marker.exists()


@pytest.mark.parametrize("fn,args", [(eval, ("1+1",)), (getattr, (1, "real")), (subprocess.call, (["true"],)),
                                      (np.load, ("x.npy",)), (__import__, ("os",))])
def test_other_callables_refused(fn, args):
    with pytest.raises(safe_pickle.UnsafePickleError, match="refused to unpickle"):
        safe_pickle.loads(pickle.dumps(_Call(fn, *args)))


def test_codecs_encode_only_latin1():
    # protocol-2 bytes go through _codecs.encode(str, 'latin1'); another encoding is refused
    data = pickle.dumps(b"\x01\x02", protocol=2)
    assert safe_pickle.loads(data) == b"\x01\x02"
    with pytest.raises(safe_pickle.UnsafePickleError, match="only 'latin1'"):
        safe_pickle.loads(data.replace(b"latin1", b"rot_13"))


def test_ma52_pose_pickle_refused_and_nothing_runs(tmp_path):
    root = make_release(tmp_path / "r", clips={"val": [("a.mp4", 1)]})
    marker = tmp_path / "pwned_ma52"
    p = root / "MA-52_openpose_28kp" / "MA52_val.pkl"
    p.write_bytes(pickle.dumps({"annotations": [_Touch(marker)]}))
    with pytest.raises(AnnotationError, match=r"MA52_val\.pkl: refused to unpickle.*system"):
        MA52Dataset(root, "val", "pose")
    assert not marker.exists()


def test_imigue_label_pickle_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned_imigue"
    np.save(tmp_path / "train_data.npy", np.ones((2, 3, 90, 22, 1), np.float32))
    (tmp_path / "train_label.pkl").write_bytes(pickle.dumps((["a", "b"], [1, _Touch(marker)])))
    with pytest.raises(IMiGUEFormatError, match=r"train_label\.pkl: refused to unpickle.*system"):
        read_labels(tmp_path / "train_label.pkl")
    with pytest.raises(IMiGUEFormatError, match="refused to unpickle"):
        IMiGUEDataset(tmp_path, "train")
    assert not marker.exists()
    # the real format still loads: a pickled (names, labels) pair
    (tmp_path / "train_label.pkl").write_bytes(pickle.dumps((["a", "b"], [1, 31])))
    assert read_labels(tmp_path / "train_label.pkl") == (["a", "b"], [1, 31])
