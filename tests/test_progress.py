"""Progress bars with DataLoader workers: one iterator per epoch, and no worker messages in a kernel.

``tqdm.auto``'s bar calls ``iter()`` on what it is given; given a DataLoader, every epoch started
its workers twice and left an unused iterator alive in the Jupyter kernel, collected later inside
a forked worker: red "Exception ignored in ... _MultiProcessingDataLoaderIter.__del__ ...
AssertionError: can only test a child process" blocks in every training cell on real data.
"""

from __future__ import annotations

import dataclasses
import textwrap

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import engine, runtime
from course_utils.data import loading

WORKER_MESSAGE = "can only test a child process"


class CountingLoader(DataLoader):
    """A DataLoader that counts how often an epoch's iterator is made."""

    iterators = 0

    def __iter__(self):
        CountingLoader.iterators += 1
        return super().__iter__()


def test_progress_bar_iterates_each_loader_once_per_epoch():
    data = TensorDataset(torch.randn(64, 4), torch.randint(0, 3, (64,)))
    train = CountingLoader(data, batch_size=16, shuffle=True, drop_last=True)
    val = CountingLoader(data, batch_size=16)
    model = nn.Linear(4, 3)
    profile = dataclasses.replace(runtime.default_profile("quick"), progress=True)
    engine.fit(model, train, val, epochs=3, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
               criterion=nn.CrossEntropyLoss(), device="cpu", num_classes=3, profile=profile)
    assert CountingLoader.iterators == 3 + 3  # one training and one validation pass per epoch


TRAINING_CELL = textwrap.dedent("""
    import dataclasses
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from course_utils import engine, runtime
    from course_utils.data import loading

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(256, 3, 8, 8), torch.randint(0, 10, (256,)))
    profile = dataclasses.replace(runtime.default_profile("quick"), num_workers=2, batch_size=32, progress=True)
    train_loader, val_loader = loading.make_loaders(data, data, profile)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 10))
    engine.fit(model, train_loader, val_loader, epochs=6, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
               criterion=nn.CrossEntropyLoss(), device="cpu", num_classes=10, profile=profile)
""")


@pytest.mark.skipif(runtime.default_num_workers("quick") == 0, reason="DataLoader workers are off on this platform")
def test_training_cell_with_workers_and_progress_bars_prints_no_worker_messages(tmp_path):
    """Two training cells in one Jupyter kernel, as a lesson runs them (82 messages before the fix)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TRAINING_CELL),
                                         nbformat.v4.new_code_cell("import gc; gc.collect()"),
                                         nbformat.v4.new_code_cell(TRAINING_CELL)])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    stderr = "".join(output.get("text", "") for cell in nb.cells for output in cell.outputs
                     if output.get("name") == "stderr")
    assert "epoch 6/6" in "".join(output.get("text", "") for output in nb.cells[2].outputs)
    assert WORKER_MESSAGE not in stderr and "Exception ignored" not in stderr, stderr[-2000:]


QUIET_BAR = r"""
import sys, types, warnings
import course_utils.data.voc, course_utils.data.cifar, course_utils.data.loading, course_utils.engine
assert "tqdm.auto" not in sys.modules, "importing a course module imported tqdm.auto"
# A Jupyter kernel without ipywidgets: there ``import tqdm.auto`` warns "IProgress not found".
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
sys.modules["ipywidgets"] = None
import IPython
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if sys.argv[1] == "plain":
        from tqdm.auto import tqdm
    from course_utils import progress
    progress.bar(range(3), disable=True)
print("WARNINGS", [str(w.message)[:40] for w in caught])
"""


@pytest.mark.parametrize("how", ["course", "plain"])
def test_course_modules_import_no_bar_and_a_bar_never_warns_without_ipywidgets(how):
    """Issue 16: voc.py imported tqdm.auto on import, which warns "IProgress not found" in a kernel
    without ipywidgets. Only ``progress.bar`` imports it, quietly, when a bar is drawn; "plain"
    shows that the simulated kernel does make a bare ``tqdm.auto`` import warn."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", QUIET_BAR, how], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    warned = "IProgress not found" in out.stdout
    assert warned == (how == "plain"), out.stdout
