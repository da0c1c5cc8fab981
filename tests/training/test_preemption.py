"""SIGTERM and SIGINT stop training cleanly and resumably; a run folder has one trainer."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch

import pyrovae
from pyrovae import VAE
from pyrovae.cli import main
from pyrovae.errors import Preempted, PyrovaeError
from pyrovae.rundir.checkpoint import load_checkpoint
from pyrovae.rundir.lock import LOCK, RunLock
from pyrovae.training import TrainState
from pyrovae.training.preemption import Signals, pending

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(autouse=True)
def _deliverable_sigint():
    """Python's own Ctrl-C handler for each test, as in a terminal.

    A suite launched in the background by a shell without job control inherits SIGINT
    ignored, which fit rightly leaves alone; these tests are about a deliverable one.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _fit(sample, resume=None, state_dict=None, callback=None, **kwargs):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(z_dim=4, hidden=(16,))
    if state_dict is not None:
        vae.load_state_dict(state_dict)
    history = pyrovae.fit(
        vae,
        sample.train[:320],
        epochs=3,
        batch_size=64,
        lr=3e-3,
        progress=False,
        validation=sample.test[:50],
        seed=5,
        kl_warmup=2,
        precision="float32",
        callback=callback and (lambda state: callback(state, vae)),
        resume=resume,
        **kwargs,
    )
    return vae.state_dict(), history


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sigterm_mid_epoch_hands_over_the_state_and_resumes_bit_for_bit(sample):
    full, history = _fit(sample)
    kept = []

    def kill_at_step_2_of_epoch_2(state, vae):
        saved = TrainState.from_dict(copy.deepcopy(state.to_dict()))  # as to disk and back
        kept.append((saved, copy.deepcopy(vae.state_dict())))
        if (state.epoch, state.step) == (1, 2):
            os.kill(os.getpid(), signal.SIGTERM)  # seen after the next step

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted, match=r"^stopped by SIGTERM at epoch 2, step 3 of 5$") as info:
        _fit(sample, callback=kill_at_step_2_of_epoch_2, checkpoint_every=2)
    assert (info.value.signum, info.value.epoch, info.value.step) == (signal.SIGTERM, 2, 3)
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is given back
    state, params = kept[-1]
    assert (state.epoch, state.step, state.end_of_epoch) == (1, 3, False)
    assert state.history["epoch"] == [1]  # completed epochs only

    resumed, resumed_history = _fit(sample, resume=state, state_dict=params)
    _same(full, resumed)
    assert resumed_history["epoch"] == [1, 2, 3]
    assert resumed_history["train_elbo"] == history["train_elbo"]


def test_a_signal_between_epochs_stops_at_the_boundary_without_a_second_handover(sample):
    seen = []

    def interrupt_after_epoch_1(state, vae):
        seen.append((state.epoch, state.step))
        if state.epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Preempted, match="stopped by SIGINT at the start of epoch 2") as info:
        _fit(sample, callback=interrupt_after_epoch_1)
    assert (info.value.signum, info.value.epoch, info.value.step) == (signal.SIGINT, 2, 0)
    assert seen == [(1, 0)]  # the end-of-epoch state is the one to resume from


def test_a_signal_before_the_first_step_hands_over_the_initial_state(sample):
    seen = []

    class Signalling(torch.utils.data.Dataset):  # data whose first read sends the signal
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            if not seen:
                seen.append("signalled")
                os.kill(os.getpid(), signal.SIGTERM)
            return self.x[i]

    states = []
    with pytest.raises(Preempted, match="at the start of epoch 1"):
        pyrovae.fit(
            VAE(z_dim=2, hidden=(8,)),
            Signalling(sample.train[:128]),
            epochs=1,
            batch_size=64,
            progress=False,
            callback=states.append,
        )
    assert [(s.epoch, s.global_step) for s in states] == [(0, 0)]


def test_a_second_sigint_interrupts_at_once(sample):
    def interrupt_twice(state, vae):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        _fit(sample, callback=interrupt_twice)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_handle_signals_false_leaves_the_handlers_alone(sample):
    caught = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    try:
        _, history = _fit(
            sample,
            callback=lambda state, vae: os.kill(os.getpid(), signal.SIGTERM),
            handle_signals=False,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert history["epoch"] == [1, 2, 3] and caught == [signal.SIGTERM] * 3


def test_signals_do_nothing_outside_the_main_thread():
    seen = {}

    def worker():
        with Signals():
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["pending"] = pending()

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"handler": before, "pending": 0}


# ------------------------------------------------------------------ command line
TRAIN = [
    "--epochs",
    "3",
    "--z-dim",
    "4",
    "--hidden",
    "32",
    "--batch-size",
    "16",
    "--checkpoint-every",
    "5",
    "--no-progress",
    "--seed",
    "3",
    "--precision",
    "float32",
]


@pytest.fixture
def medium_npz(tmp_path, sample):
    path = tmp_path / "medium.npz"
    images = (sample.train[:1200] * 255).round().to(torch.uint8).reshape(-1, 28, 28).numpy()
    np.savez(path, x=images)
    return path


def test_sigterm_to_pyrovae_train_then_resume_equals_an_uninterrupted_run(tmp_path, medium_npz):
    stopped = tmp_path / "stopped"
    command = [sys.executable, "-m", "pyrovae", "train", "--dataset", str(medium_npz)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [*command, "--out", str(stopped), *TRAIN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (stopped / "history.json").exists():  # the first checkpoint: step 5 of epoch 1
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line
    pattern = (
        r"pyrovae train: stopped by SIGTERM at (epoch \d, step \d+ of 60|the start of "
        rf"epoch \d); the state is saved in {re.escape(str(stopped / 'checkpoint.pt'))}: "
        rf"continue with pyrovae train --resume {re.escape(str(stopped))}"
    )
    assert re.fullmatch(pattern, line), line
    assert not (stopped / LOCK).exists()
    state = load_checkpoint(stopped / "checkpoint.pt")["train_state"]
    done = json.loads((stopped / "history.json").read_text())
    assert done["epoch"] == list(range(1, state["epoch"] + 1))  # completed epochs only

    assert main(["train", "--resume", str(stopped), "--no-progress"]) == 0
    history = json.loads((stopped / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3]

    clean = tmp_path / "clean"
    assert main(["train", "--dataset", str(medium_npz), "--out", str(clean), *TRAIN]) == 0
    _same(
        load_checkpoint(stopped / "checkpoint.pt")["model_state"],
        load_checkpoint(clean / "checkpoint.pt")["model_state"],
    )
    assert history["train_elbo"] == json.loads((clean / "history.json").read_text())["train_elbo"]


def _write_lock(folder, pid, host=None):
    record = {
        "pid": pid,
        "host": host or socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(),
    }
    (folder / LOCK).write_text(json.dumps(record))


def _files(folder):
    return {
        p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_run_being_trained_is_refused_and_left_untouched(run_dir, tiny_npz, capsys):
    _write_lock(run_dir, os.getpid())  # this very process: alive
    before = _files(run_dir)
    capsys.readouterr()
    for args in (
        ["train", "--resume", str(run_dir), "--epochs", "2"],
        ["train", "--dataset", str(tiny_npz), "--out", str(run_dir), "--force", "--epochs", "1"],
        ["train", "--dataset", str(tiny_npz), "--out", str(run_dir), "--epochs", "1"],
    ):
        assert main([*args, "--no-progress"]) == 1
        err = capsys.readouterr().err.strip()
        assert err == (
            f"pyrovae train: error: {run_dir} is being trained by process {os.getpid()} on "
            f"{socket.gethostname()} ({run_dir / LOCK}); wait for it to finish or train "
            "into another --out"
        )
        assert _files(run_dir) == before
    with pytest.raises(PyrovaeError, match="is being trained by process"), RunLock(run_dir):
        pass
    assert _files(run_dir) == before


def test_a_stale_lock_does_not_block_resume(run_dir, capsys):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its number names no process now
    _write_lock(run_dir, finished.pid)
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2]
    assert not (run_dir / LOCK).exists()
    assert LOCK not in capsys.readouterr().out  # not in "wrote RUN/ (...)"


def test_the_lock_is_held_while_training_and_only_its_owner_removes_it(tmp_path):
    with RunLock(tmp_path) as lock:
        record = json.loads((tmp_path / LOCK).read_text())
        assert record == lock.record and record["pid"] == os.getpid()
        with pytest.raises(PyrovaeError, match="is being trained"), RunLock(tmp_path):
            pass
        assert (tmp_path / LOCK).exists()  # the refused one did not remove it
        _write_lock(tmp_path, os.getpid(), host="another-host")  # taken over meanwhile
    assert json.loads((tmp_path / LOCK).read_text())["host"] == "another-host"
    with pytest.raises(PyrovaeError, match="cannot be checked from here"), RunLock(tmp_path):
        pass
    (tmp_path / LOCK).write_text("")  # unreadable (a process killed while writing it)
    with RunLock(tmp_path):
        pass
    assert not (tmp_path / LOCK).exists()


def test_a_signal_to_one_process_stops_every_process_at_the_same_step(tmp_path, monkeypatch):
    import torch.multiprocessing as mp
    from helpers import ddp_worker

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]), prepend=":")
    out = tmp_path / "stopped"
    mp.spawn(
        ddp_worker.preempted_worker,
        args=(2, str(tmp_path / "init"), str(out)),
        nprocs=2,
        join=True,
    )
    rank0, rank1 = (json.loads(Path(f"{out}.{rank}").read_text()) for rank in (0, 1))
    assert rank0["stopped"] == rank1["stopped"]
    signum, epoch, step = rank0["stopped"]
    assert signum == signal.SIGTERM and step > 0
    assert rank0["handed"] == [[epoch - 1, step]]  # on rank 0 only, at the step it stopped
    assert rank1["handed"] == []
