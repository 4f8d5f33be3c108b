"""deploy/errors.py: a signal noted inside interrupts_deferred is raised at the block's next safe point
(raise_if_interrupted), not only when the block ends; outside a block, or before a signal, the safe
point does nothing."""

import os
import signal

import pytest
from edgevision.deploy.errors import Terminated, interrupts_deferred, raise_if_interrupted


def test_a_noted_signal_is_raised_at_the_next_safe_point_and_not_before():
    said, steps = [], []
    raise_if_interrupted()  # outside a block: nothing
    with pytest.raises(Terminated):
        with interrupts_deferred(said.append, "this step"):
            raise_if_interrupted()  # nothing came yet
            steps.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append(2)  # the step goes on to its safe point
            raise_if_interrupted()
            steps.append(3)
    assert steps == [1, 2] and said == ["stopping when this step is done (a few seconds)"]
    raise_if_interrupted()  # the block is closed: its signal is gone with it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_in_an_inner_block_is_raised_there_and_the_outer_block_is_unaffected():
    said = []
    with interrupts_deferred(said.append, "the outer step"):
        with pytest.raises(KeyboardInterrupt) as info:
            with interrupts_deferred(said.append, "the inner step"):
                os.kill(os.getpid(), signal.SIGINT)
                raise_if_interrupted()
        assert not isinstance(info.value, Terminated)
        raise_if_interrupted()  # the outer block noted nothing
    assert said == ["stopping when the inner step is done (a few seconds)"]
