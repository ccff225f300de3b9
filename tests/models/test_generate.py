"""NextCell generation and cell embeddings."""

import pytest
import torch

from maxtoki.models import MaxToki, MaxTokiConfig

# a small temporal vocabulary: genes 4..39 and 62..79, 20 time tokens at 40..59 (-10..9 months),
# <boq>=60, <eoq>=61
CONFIG = dict(
    vocab_size=80,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    time_token_start_id=40,
    n_time_tokens=20,
    time_min_months=-10,
    boq_token_id=60,
    eoq_token_id=61,
)
GENES = [*range(4, 40), *range(62, 80)]


def _model(seed=0, **overrides) -> MaxToki:
    torch.manual_seed(seed)
    return MaxToki(MaxTokiConfig(**{**CONFIG, **overrides})).eval()


def _cell(n, seed):
    g = torch.Generator().manual_seed(seed)
    genes = torch.tensor(GENES)[torch.randperm(len(GENES), generator=g)[:n]]
    return torch.cat([torch.tensor([2]), genes, torch.tensor([3])])


def _prompt(seed=0, n_genes=(10, 8)):
    """<bos> c1 <eos> Δt <bos> c2 <eos> <boq> Δt <eoq>"""
    c1, c2 = _cell(n_genes[0], seed), _cell(n_genes[1], seed + 1)
    return torch.cat([c1, torch.tensor([45]), c2, torch.tensor([60, 47, 61])])


@pytest.fixture(scope="module")
def model_f64():
    return _model().double()


def test_cached_and_uncached_greedy_agree(model_f64):
    prompt = _prompt()
    cached = model_f64.generate([prompt], max_new_tokens=30, greedy=True)
    uncached = model_f64.generate([prompt], max_new_tokens=30, greedy=True, use_cache=False)
    assert torch.equal(cached[0], uncached[0]) and len(cached[0]) > 0


def test_batched_prompts_of_different_lengths(model_f64):
    prompts = [_prompt(0, (10, 8)), _prompt(5, (3, 4)), _prompt(9, (14, 2))]
    batched = model_f64.generate(prompts, max_new_tokens=25, greedy=True)
    uncached = model_f64.generate(prompts, max_new_tokens=25, greedy=True, use_cache=False)
    single = [model_f64.generate([p], max_new_tokens=25, greedy=True)[0] for p in prompts]
    for a, b, c in zip(batched, uncached, single, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def _eos_bias(model, bias):
    head = torch.nn.Linear(32, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[3] = bias
    model.lm_head = head


def test_generated_cells_are_valid():
    model = _model(seed=3)
    _eos_bias(model, -3.0)  # make <eos> rare so cells run long and masking is exercised
    prompts = [_prompt(s) for s in range(4)]
    for cell in model.generate(prompts, max_new_tokens=60, temperature=1.5, random_state=0):
        genes = cell[:-1] if cell[-1] == 3 else cell
        assert len(genes) >= 1
        assert len(set(genes.tolist())) == len(genes), "a gene was repeated"
        assert set(genes.tolist()) <= set(GENES), "special or time token generated"
        assert (cell[:-1] != 3).all()


def test_eos_needs_a_gene_and_genes_run_out():
    model = _model()
    _eos_bias(model, 100.0)  # <eos> would win everywhere
    cell = model.generate([_prompt()], max_new_tokens=5, greedy=True)[0]
    assert len(cell) == 2 and cell[-1] == 3 and cell[0] in GENES
    _eos_bias(model, -100.0)  # <eos> never wins: the cell uses every gene, then stops
    cell = model.generate([_prompt()], max_new_tokens=len(GENES) + 5, greedy=True)[0]
    assert sorted(cell[:-1].tolist()) == GENES and cell[-1] == 3


def test_prompt_with_open_cell_continues_without_repeats():
    model = _model()
    prompt = torch.cat([_prompt()[:-1], torch.tensor([61, 2, 10, 11, 12])])  # <eoq> <bos> 10 11 12
    for cell in model.generate([prompt] * 3, max_new_tokens=40, random_state=1):
        assert not {10, 11, 12} & set(cell.tolist())


def test_rng_reproducibility():
    model = _model()
    prompts = [_prompt(0), _prompt(3)]
    a = model.generate(prompts, max_new_tokens=20, random_state=123, top_k=10)
    b = model.generate(
        prompts, max_new_tokens=20, random_state=torch.Generator().manual_seed(123), top_k=10
    )
    c = model.generate(prompts, max_new_tokens=20, random_state=124, top_k=10)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(not torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_top_k_one_and_tiny_top_p_are_greedy():
    model = _model()
    greedy = model.generate([_prompt()], max_new_tokens=15, greedy=True)[0]
    assert torch.equal(
        model.generate([_prompt()], max_new_tokens=15, top_k=1, random_state=0)[0], greedy
    )
    assert torch.equal(
        model.generate([_prompt()], max_new_tokens=15, top_p=1e-6, random_state=5)[0], greedy
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_new_tokens": 0}, ValueError),
        ({"max_new_tokens": 5, "temperature": 0.0}, ValueError),
        ({"max_new_tokens": 5, "top_p": 1.5}, ValueError),
        ({"max_new_tokens": 5, "top_k": 0}, ValueError),
        ({"max_new_tokens": 5, "rng": "seed"}, TypeError),
    ],
)
def test_generate_argument_errors(kwargs, error):
    with pytest.raises(error):
        _model().generate([_prompt()], **kwargs)


def test_generate_prompt_errors():
    model = _model()
    with pytest.raises(ValueError, match="list of 1-D"):
        model.generate(torch.zeros(2, 3, dtype=torch.long), max_new_tokens=2)
    with pytest.raises(ValueError, match="outside"):
        model.generate([torch.tensor([2, 500])], max_new_tokens=2)


def test_embed_mean_eos_and_layers():
    model = _model()
    cells = [_cell(6, 0), _cell(9, 1)]
    ids = torch.zeros(2, 11, dtype=torch.long)
    mask = torch.zeros(2, 11, dtype=torch.bool)
    for row, c in enumerate(cells):
        ids[row, : len(c)], mask[row, : len(c)] = c, True
    emb = model.embed(ids, attention_mask=mask)
    assert emb.shape == (2, 32) and emb.dtype == torch.float32
    with torch.no_grad():
        hidden = model(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    for row, c in enumerate(cells):
        n = len(c)
        torch.testing.assert_close(emb[row], hidden[-1][row, 1 : n - 1].mean(0))
        torch.testing.assert_close(
            model.embed(ids, attention_mask=mask, emb_layer=1)[row],
            hidden[1][row, 1 : n - 1].mean(0),
        )
        torch.testing.assert_close(
            model.embed(ids, attention_mask=mask, mode="eos", emb_layer=-2)[row],
            hidden[-2][row, n - 1],
        )
    alone = model.embed(cells[0][None])
    torch.testing.assert_close(alone[0], emb[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="emb_layer"):
        model.embed(ids, emb_layer=3)
    with pytest.raises(ValueError, match="<eos>"):
        model.embed(ids[:, :4], mode="eos")
