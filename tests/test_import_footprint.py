"""``import mdn_fast`` loads the model and its skeleton geometry (``mdn_fast.skeleton``), not the dataset
readers, the video decoder, the data checks or PyAV: a user building ``MicroDualNet`` pays for none of
them, and the model works where PyAV is not installed. Run in a fresh interpreter: this process has
long imported everything."""
import json
import subprocess
import sys

READERS = ("mdn_fast.data", "mdn_fast.training")


def test_import_mdn_fast_loads_no_reader_decoder_or_check():
    code = ("import json, sys, mdn_fast\n"
            "m = mdn_fast.MicroDualNet(num_classes=3, layout='coco18_hands28', modality='pose', dim=16, heads=2)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert not [m for m in loaded if m.startswith(READERS)], [m for m in loaded if m.startswith(READERS)]
    assert "av" not in loaded
    assert "mdn_fast.skeleton.layouts_extra" in loaded      # the real-data layouts the model may be built with
