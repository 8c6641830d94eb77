"""A Ray workaround: when Tune stops a trial, the trial's Train run is aborted with it.

When Tune stops a trial (ASHA, an error, the end of the search), it ends the trial's actor.
The Train controller dies with it, but the placement group of its workers does not: Ray
frees a placement group only when its creator *and* the driver's job are gone, and Train
relies on a detached cleaner that needs Ray's state API (it fails, for one, when several
Ray instances share a host). A leaked group holds its CPUs or GPUs for good, and the next
trials wait for them for ever. This is Ray's issue ray-project/ray#54305 ("[Ray Tune +
Train V2] Broken resource sharing among Tune trials"; a maintainer there: when a trial
actor is terminated rather than its controller exiting, "the placement group created by
Train V2 is there"), still so in Ray 2.60. Remove this module when Ray fixes it.

So each trial runs its Train fit inside :func:`abortable_training`, whose callback posts
the Train controller's handle to a mailbox on the first report; the trial's cleanup (the
:class:`StopTrainingWithTrial` mixin, which Tune waits for before it frees the trial's
resources) aborts the Train run the way Ctrl-C would: workers stopped and their placement
group removed. Nothing else in specray needs to know about it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import ray
from ray.train.v2.api.callback import UserCallback
from ray.util.queue import Empty, Queue

ABORT_TIMEOUT_S = 60.0
"""How long a trial's cleanup waits for its Train controller to abort, seconds."""


class _PostController(UserCallback):
    """Posts the Train controller's handle (the actor running this callback) to the
    mailbox on the first report."""

    def __init__(self, mailbox: Queue):
        self._mailbox = mailbox
        self._posted = False

    def after_report(self, run_context, metrics, checkpoint):
        if not self._posted:
            self._mailbox.put(ray.get_runtime_context().current_actor)
            self._posted = True


@dataclass
class RunningTrial:
    """One trial's Train run: ``callback`` goes to its TorchTrainer; ``stopping`` is True
    once Tune's cleanup has begun aborting it (the run's error is then expected)."""

    mailbox: Queue
    stopping: bool = False

    @property
    def callback(self) -> UserCallback:
        return _PostController(self.mailbox)

    def abort_training(self) -> None:
        self.stopping = True
        try:
            controller = self.mailbox.get(block=False)
        except Empty:
            controller = None  # stopped before its first report; Train's own cleaner remains
        except Exception:  # the mailbox is gone with a finished run
            controller = None
        if controller is not None:
            # abort() ends the controller, so its reply is an error; that is the success
            with contextlib.suppress(Exception):
                ray.get(controller.abort.remote(), timeout=ABORT_TIMEOUT_S)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self.mailbox.shutdown()


_RUNNING: dict[str, RunningTrial] = {}
"""The trials running in this process (one per Tune trial actor), by trial id."""


@contextlib.contextmanager
def abortable_training(trial_id: str) -> Iterator[RunningTrial]:
    """Within the block, trial ``trial_id``'s Train run can be aborted by its cleanup."""
    running = _RUNNING[trial_id] = RunningTrial(Queue(1, actor_options={"num_cpus": 0}))
    try:
        yield running
    finally:
        if not running.stopping and _RUNNING.pop(trial_id, None) is not None:
            running.close()


class StopTrainingWithTrial:
    """Mixed into the Tune trainable (``fn.__mixins__``): its cleanup first aborts a Train
    run still going."""

    def cleanup(self):
        running = _RUNNING.pop(self.trial_id, None)
        if running is not None:
            running.abort_training()
        super().cleanup()
