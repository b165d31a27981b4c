"""benchmarks/copy_choices.py: copy-task picks by offset from the repeated run."""

import re

import benchmark_module

copy_choices = benchmark_module.load("copy_choices")


class _Picker:
    """Picks the word at a fixed offset from the query's repeated run (read from the prompt itself)."""

    def __init__(self, offset):
        self.offset = offset

    def loglik(self, prompt, candidates):
        words = re.search(r"Fill in blank:\n ((?:\S+ )*)___\. ->$", prompt)[1].split()
        listed, run = words[:10], words[10:]
        target = listed[listed.index(run[0]) + self.offset]
        return [float(c == f" {target}") for c in candidates]


def test_offsets_count_the_pick_relative_to_the_run():
    for task in copy_choices.COPY_TASKS:
        for offset in (0, 4, 5):
            counts = copy_choices.pick_offsets(_Picker(offset), task, n=30, shots=2, seed=0)
            assert counts == {offset: 30}
    right = copy_choices.summary(copy_choices.pick_offsets(_Picker(5), "copy_random", n=10, shots=0, seed=1))
    recent = copy_choices.summary(copy_choices.pick_offsets(_Picker(2), "copy_words", n=10, shots=0, seed=1))
    assert right == {"run": 0, "answer": 10, "other": 0} and recent == {"run": 10, "answer": 0, "other": 0}
