"""The worker pool when a worker dies outside the step loop: while encoding the prompt, or before
it takes the conditioning."""

import os

from gigacanvas.cluster.dispatch import WorkerPool
from gigacanvas.cluster.render import _encode
from gigacanvas.cluster.spec import RenderSpec


def _actor_class(ray):
    @ray.remote(num_cpus=0, max_restarts=0)
    class Fake:
        def __init__(self, dies_on: str | None):
            self.dies_on, self.cond = dies_on, None

        def encode(self, prompt, negative, guidance):
            if self.dies_on == "encode":
                os._exit(1)
            return f"cond({prompt})"

        def set_conditioning(self, cond):
            if self.dies_on == "set":
                os._exit(1)
            self.cond = cond

        def conditioning(self):
            return self.cond

    return Fake


def test_a_worker_dying_while_it_encodes_the_prompt_hands_the_encode_to_another(ray_cluster):
    fake = _actor_class(ray_cluster)
    notes: list[str] = []
    pool = WorkerPool([fake.remote("encode"), fake.remote(None)], notes.append)
    assert _encode(pool, RenderSpec(prompt="a fox")) == "cond(a fox)"
    assert len(pool.alive) == 1 and len(notes) == 1 and "a worker actor died" in notes[0]


def test_a_worker_dead_before_the_conditioning_is_buried_and_the_others_get_it(ray_cluster):
    fake = _actor_class(ray_cluster)
    notes: list[str] = []
    survivor = fake.remote(None)
    pool = WorkerPool([fake.remote("set"), survivor], notes.append)
    pool.set_conditioning("cond")
    assert pool.alive == [survivor] and ray_cluster.get(survivor.conditioning.remote()) == "cond"
    assert len(notes) == 1 and "a worker actor died" in notes[0]
