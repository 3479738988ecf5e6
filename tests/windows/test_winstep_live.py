"""A REMAP's INVALs written while the reader still applies it (winstep), on a live mount.

The engine queues a populating REMAP's INVALs to its writer thread before it changes
the page table (native/winfast.c, queue_early), and the STOREs and the reply once it
has (remap_seal).  What must keep holding (docs/windows.md "Coherence",
docs/decisions.md "A REMAP's INVALs written while it is applied"):

* every notification strictly before the reply: right after each remap returns,
  another process's existing mapping reads the newly shown page;
* a store made through the mapping before the remap is laundered into the object
  page the window page showed *then* (the launder WRITE the INVAL makes the kernel
  send is served after the remap is applied, under the GIL): exact against a model;
* a REMAP a clone reader read is answered on its own fd (``-o readers=2``);
* the same with the switch off (SHMFS_WINFAST_EARLY=0), and with the writer never
  spinning for the seal ("2": it sleeps on its condition variable every time).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mount.server import winfast
from mount.winapi.client import mount_stats
from tests.support.mounts import shmfs_mount
from tests.windows.test_winfast_live import _launder_model

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not winfast.available(),
                                 reason="the C extension is not built (scripts/bootstrap.sh)")]


def _early(mnt: Path) -> dict:
    return mount_stats(mnt)["session"]["winfast"]["early"]


@pytest.mark.parametrize("early,options", [("1", ""), ("2", ""), ("1", "readers=2"),
                                           ("0", "")])
def test_launder_model_with_early_invals(monkeypatch: pytest.MonkeyPatch, early: str,
                                         options: str) -> None:
    """300 populating remaps, half of them after a store through another process's
    mapping: every load right after a remap sees the new page, every stored byte ends
    in the object page shown when it was stored, no write error; the early path took
    the INVAL-carrying remaps exactly when it is switched on."""
    monkeypatch.setenv("SHMFS_WINFAST_EARLY", early)
    with shmfs_mount(options) as mnt:
        d = mnt / "d"
        d.mkdir()
        _launder_model(mnt, d)  # asserts the model, > 50 launders, no write errors
        ea = _early(mnt)
        native = mount_stats(mnt)["session"]["winfast"]
    assert ea["enabled"] == int(early), ea
    if early == "0":
        assert ea["batches"] == 0, ea
    elif early == "1":  # adaptive (it backs off after a sleep for a seal)
        assert ea["batches"] >= 1, ea
    else:  # "2": every INVAL-carrying REMAP early, the writer never spinning
        assert ea["batches"] > 100, (ea, native["remaps"])
        assert ea["sleeps"] == ea["spins"] and ea["backoffs"] == 0, ea
