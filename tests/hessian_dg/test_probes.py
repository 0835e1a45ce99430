"""Rademacher probes, per-chunk seeds and the probe mean."""
import pytest
import torch

from hessian_dg import probes


def test_rademacher_is_plus_minus_one_and_balanced():
    z = probes.rademacher((200, 50), torch.Generator().manual_seed(0), dtype=torch.float64)
    assert set(z.unique().tolist()) == {-1.0, 1.0}
    # 10,000 fair signs: the mean is within 4 standard errors (0.04) of 0.
    assert abs(float(z.mean())) < 0.04


@pytest.mark.parametrize("dtype, width", [(torch.float32, 32), (torch.float64, 64),
                                          (torch.bfloat16, 16), (torch.float16, 16)])
def test_rademacher_signs_are_balanced_in_every_bit_position(dtype, width):
    """Signs come ``width`` to a random word: no bit position may be biased."""
    z = probes.rademacher((4000 * width,), torch.Generator().manual_seed(1), dtype=dtype)
    z = z.double()
    assert set(z.unique().tolist()) == {-1.0, 1.0}
    by_position = z.reshape(-1, width).mean(dim=0)  # 4,000 signs each: s.e. 0.016
    assert by_position.abs().max() < 0.07
    pairs = (z[:-1] * z[1:]).mean()  # neighbours independent; s.e. 0.0025 to 0.008
    assert abs(float(pairs)) < 0.035


def test_rademacher_fills_a_ragged_tail_and_reused_buffers():
    """Sizes that are no multiple of the word width, and a reused buffer: every
    entry is overwritten with a sign, and the draw depends on the seed only."""
    buffer = torch.full((3, 7, 11), 5.0)
    a = probes.rademacher_(buffer, torch.Generator().manual_seed(2)).clone()
    assert set(a.unique().tolist()) == {-1.0, 1.0}
    buffer.fill_(5.0)
    b = probes.draw_chunk(7, 2, (7, 11), out=buffer)
    assert b.shape == (2, 7, 11) and set(b.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(b, probes.draw_chunk(7, 2, (7, 11)))
    assert torch.equal(a, probes.rademacher((3, 7, 11), torch.Generator().manual_seed(2)))


def test_rademacher_short_draws_use_fresh_bits():
    """Fewer entries than a word has bits (the ragged path alone): each position is
    still a fair, seed-dependent sign."""
    draws = torch.stack([probes.rademacher((5,), torch.Generator().manual_seed(seed))
                         for seed in range(400)])
    assert set(draws.unique().tolist()) == {-1.0, 1.0}
    assert draws.mean(dim=0).abs().max() < 0.25  # 400 signs each: s.e. 0.05


def test_rademacher_rejects_what_it_cannot_fill():
    with pytest.raises(TypeError, match="torch.int64"):
        probes.rademacher_(torch.zeros(4, dtype=torch.int64), torch.Generator())
    with pytest.raises(ValueError, match="contiguous"):
        probes.rademacher_(torch.zeros(4, 4).t(), torch.Generator())


def test_rademacher_depends_only_on_the_generator_state():
    a = probes.rademacher((7, 3), torch.Generator().manual_seed(5))
    b = probes.rademacher((7, 3), torch.Generator().manual_seed(5))
    c = probes.rademacher((7, 3), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("num, chunk, expected", [
    (70, 32, [32, 32, 6]), (64, 32, [32, 32]), (5, None, [5]), (3, 10, [3]),
])
def test_chunk_sizes(num, chunk, expected):
    assert probes.chunk_sizes(num, chunk) == expected


@pytest.mark.parametrize("num, chunk", [(0, 4), (-3, 4), (True, 4), (2.0, 4), (8, 0)])
def test_chunk_sizes_rejects_bad_counts(num, chunk):
    with pytest.raises(ValueError, match="must be a positive int"):
        probes.chunk_sizes(num, chunk)


def test_probe_mean_draws_the_chunks_of_chunk_seeds():
    """The probe mean sees exactly the chunks a backward pass can regenerate from
    :func:`chunk_seeds` and :func:`draw_chunk` (what linear_hutchinson relies on)."""
    plan = probes.chunk_seeds(10, 4, torch.Generator().manual_seed(3))
    assert [size for _, size in plan] == [4, 4, 2]
    assert len({seed for seed, _ in plan}) == 3
    expected = sum(probes.draw_chunk(seed, size, (6,), dtype=torch.float64).sum(0)
                   for seed, size in plan) / 10
    mean = probes.rademacher_probe_mean(lambda z: z.sum(0), (6,), 10,
                                        torch.Generator().manual_seed(3),
                                        dtype=torch.float64, chunk_size=4)
    assert torch.equal(mean, expected)


def test_probe_mean_is_the_mean_of_its_probes():
    """With fn = identity-sum, the probe mean is the average probe, entries in [-1, 1]
    on a grid of 2/S, and reproducible from the generator."""
    mean_a = probes.rademacher_probe_mean(lambda z: z.sum(0), (6,), 10,
                                          torch.Generator().manual_seed(3), chunk_size=4)
    mean_b = probes.rademacher_probe_mean(lambda z: z.sum(0), (6,), 10,
                                          torch.Generator().manual_seed(3), chunk_size=4)
    assert torch.equal(mean_a, mean_b)
    steps = (mean_a * 10 + 10) / 2
    assert torch.allclose(steps, steps.round()) and mean_a.abs().max() <= 1


def _heads_and_batches():
    g = torch.Generator().manual_seed(3)
    head = torch.nn.Linear(4, 3)
    features = [torch.randn(6, 4, generator=g) for _ in range(3)]
    labels = [torch.randint(0, 3, (6,), generator=g) for _ in range(3)]
    return head, features, labels


@pytest.mark.parametrize("mlp", [False, True], ids=["linear-head", "mlp-head"])
def test_estimators_given_a_generator_leave_the_global_rng_alone(mlp):
    """What the module's docstring says: with a generator, no global draw (Hutchinson
    penalty, Lanczos distances with and without one); without, exactly one."""
    from hessian_dg import distances, hessian_alignment_penalty
    from hessian_dg.penalty import describe_head
    torch.manual_seed(0)
    head, features, labels = _heads_and_batches()
    if mlp:
        head = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(),
                                   torch.nn.Linear(5, 3))
    before = torch.get_rng_state()
    hessian_alignment_penalty(head, features, labels, curvature="hutchinson",
                              num_probes=5, generator=torch.Generator().manual_seed(1))
    heads = {f"env{i}": describe_head(head, f, y) for i, (f, y) in
             enumerate(zip(features, labels))}
    for generator in (torch.Generator().manual_seed(2), None):
        distances.hessian_spectral_norm(heads["env0"], generator)
    distances.compare_domains(heads, [("env0", "env1")], torch.Generator().manual_seed(4),
                              num_probes=5)
    assert torch.equal(torch.get_rng_state(), before)
    hessian_alignment_penalty(head, features, labels, curvature="hutchinson", num_probes=5)
    after = torch.get_rng_state()
    torch.set_rng_state(before)
    probes.generator_from_global_rng()
    assert torch.equal(torch.get_rng_state(), after)  # one draw, that one
