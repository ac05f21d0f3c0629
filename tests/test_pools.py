from picaco_dspy.objective.bound import ResponseScore
from picaco_dspy.optimize.pools import PooledResponse, PromptPool


def item(text, reward, redundancy=0.5, iteration=1, rollout=0):
    return PooledResponse(text, ResponseScore({}, {}, redundancy, reward, 0.0), iteration, rollout)


def test_aligned_pool_keeps_the_top_rewards_and_accumulates():
    pool = PromptPool("x", {"query": "x"})
    entered = pool.add_aligned([item("a", 1.0), item("b", 3.0), item("c", 2.0)], capacity=2)
    assert [p.response for p in pool.aligned] == ["b", "c"] and entered == 2
    entered = pool.add_aligned([item("d", 2.5, iteration=2), item("e", 0.0, iteration=2)], capacity=2)
    assert [p.response for p in pool.aligned] == ["b", "d"] and entered == 1
    assert pool.aligned[0].iteration == 1  # a strong old response survives later iterations


def test_aligned_pool_keeps_one_copy_of_identical_texts():
    pool = PromptPool("x", {})
    pool.add_aligned([item("same", 1.0, rollout=1), item(" same ", 1.0, rollout=2), item("other", 0.5)], capacity=3)
    assert [p.response for p in pool.aligned] == ["same", "other"]
    assert pool.aligned[0].rollout_id == 1


def test_ties_do_not_depend_on_arrival_order():
    a, b = item("a", 1.0, rollout=2), item("b", 1.0, rollout=1)
    first, second = PromptPool("x", {}), PromptPool("x", {})
    first.add_aligned([a, b], capacity=1)
    second.add_aligned([b, a], capacity=1)
    assert first.aligned[0].response == second.aligned[0].response == "b"


def test_noisy_pool_keeps_the_most_parroting():
    pool = PromptPool("x", {})
    pool.set_noisy(
        [item("plain", 5.0, redundancy=0.55), item("parrot", -5.0, redundancy=0.97), item("half", 0.0, redundancy=0.8)],
        capacity=2,
    )
    assert [p.response for p in pool.noisy] == ["parrot", "half"]


def test_pool_items_and_round_trip():
    pool = PromptPool("x", {"query": "x"})
    pool.add_aligned([item("a", 1.0)], capacity=3)
    pool.set_noisy([item("n", -1.0, redundancy=0.9)], capacity=3)
    assert [(i.response, i.reward) for i in pool.items()] == [("a", 1.0), ("n", -1.0)]
    assert [i.response for i in pool.items(include_noisy=False)] == ["a"]
    data = pool.to_dict()
    assert PooledResponse.from_dict(data["aligned"][0]) == pool.aligned[0]
