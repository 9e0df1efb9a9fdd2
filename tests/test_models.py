"""Architectures on their own: shapes for every input kind, the formulas they
claim, causality of the language models, and refusals of impossible inputs."""

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.catalog import MODELS
from src.data.spec import DataSpec
from src.models.transformer import scaled_dot_product_attention, sinusoidal_positions
from tests.conftest import CONF_DIR, run_train

SPECS = {
    "features": DataSpec("features", (4,), "multiclass", 3),
    "sequence": DataSpec("features", (5, 3), "regression", 1),
    "image": DataSpec("image", (1, 8, 8), "multiclass", 10),
    "rgb": DataSpec("image", (3, 6, 5), "binary", 1),
    "tokens": DataSpec("tokens", (12,), "multiclass", 3, vocab_size=20),
}
LM = DataSpec("tokens", (12,), "language_model", 20, vocab_size=20)
LM_MODELS = ["rnn", "lstm", "gru", "gpt"]


def build(option: str, spec: DataSpec, **overrides):
    """The model `model=<option>` builds for this data, from its real YAML."""
    node = OmegaConf.load(CONF_DIR / "model" / f"{option}.yaml")
    return instantiate(node, **overrides)(**spec.model_dims())


def batch(spec: DataSpec, size: int = 3) -> torch.Tensor:
    if spec.input_kind != "tokens":
        return torch.randn(size, *spec.input_shape)
    x = torch.randint(1, spec.vocab_size, (size, *spec.input_shape))
    x[0, 5:] = 0  # a short text: padding after its last real token
    return x


CLASSIFIERS = [
    pytest.param(model, name, id=f"{model}-{name}")
    for model in ["linear", "mlp", "bow", "cnn", "rnn", "lstm", "gru", "transformer"]
    for name, spec in SPECS.items()
    if spec.input_kind in MODELS[model].reads
]


@pytest.mark.parametrize("model,name", CLASSIFIERS)
def test_classifiers_give_one_row_per_example(model, name):
    spec = SPECS[name]
    assert build(model, spec)(batch(spec)).shape == (3, spec.output_size)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("name", ["features", "image", "tokens"])
def test_stacked_bidirectional_layers_of_different_sizes(cell, name):
    spec = SPECS[name]
    net = build(cell, spec, hidden_sizes=[64, 32], bidirectional=True, dropout=0.2)
    assert [layer.hidden_size for layer in net.layers] == [64, 32]
    assert net.layers[1].input_size == 128 and net.head.in_features == 64  # both directions passed on
    assert net(batch(spec)).shape == (3, spec.output_size)


@pytest.mark.parametrize("model,options", [
    ("bow", {}), ("lstm", {}), ("gru", {"bidirectional": True, "num_layers": 2}), ("rnn", {}),
])
def test_token_classifiers_ignore_the_padding(model, options):
    net = build(model, SPECS["tokens"], **options).eval()
    x = torch.randint(1, 20, (4, 12))
    x[:, 6:] = 0
    x[1, 3:] = 0
    # The same texts with less padding after them give the same outputs.
    torch.testing.assert_close(net(x), net(x[:, :7]))


@pytest.mark.parametrize("model", LM_MODELS)
def test_language_models_give_next_token_logits_at_every_position(model):
    assert build(model, LM)(batch(LM)).shape == (3, 12, 20)


@pytest.mark.parametrize("model", LM_MODELS)
def test_language_models_do_not_see_the_future(model):
    net = build(model, LM, num_layers=2).eval()
    x = torch.randint(1, 20, (2, 12))
    for t in (0, 5, 10):
        changed = x.clone()
        changed[:, t + 1:] = torch.randint(1, 20, (2, 11 - t))
        before, after = net(x), net(changed)
        torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1])
        assert not torch.allclose(before[:, t + 1:], after[:, t + 1:])


@pytest.mark.parametrize("model", LM_MODELS)
def test_language_models_learn_a_repeated_pattern(model):
    torch.manual_seed(0)
    net = build(model, LM)
    x = torch.tensor([[1, 2, 3, 4, 5, 6] * 3]).repeat(8, 1)  # (8, 18)
    inputs, targets = x[:, :12], x[:, 1:13]
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(net(inputs).flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_gpt_generates_the_asked_number_of_valid_tokens():
    net = build("gpt", LM)
    prompt = torch.randint(1, 20, (2, 4))
    for top_k in (None, 3):
        out = net.generate(prompt, max_new_tokens=15, temperature=0.8, top_k=top_k)  # beyond the context of 12
        assert out.shape == (2, 19) and out.dtype == torch.long
        assert torch.equal(out[:, :4], prompt)
        assert ((out >= 1) & (out < 20)).all()  # a vocabulary id, never padding
    assert net.training  # the mode is given back


def test_vanilla_rnn_follows_the_elman_formula():
    net = build("rnn", SPECS["features"], hidden_size=3).eval()
    x = torch.randn(2, 4)
    steps = net.inputs(x)  # (B, T, E): one feature per step, projected
    layer = net.layers[0]
    W_hx, W_hh, b = layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0 + layer.bias_hh_l0
    h = torch.zeros(2, 3)
    for t in range(4):
        h = torch.tanh(h @ W_hh.T + steps[:, t] @ W_hx.T + b)
    torch.testing.assert_close(net(x), net.head(h))


@pytest.mark.parametrize("with_mask", [False, True])
def test_attention_equals_torch(with_mask):
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))  # (B, H, T, d)
    mask = torch.rand(2, 1, 5, 5) < 0.3 if with_mask else None
    if with_mask:
        mask[..., 0] = False  # every query keeps one key
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else ~mask)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask), expected)


@pytest.mark.parametrize("d_model", [6, 7])
def test_sinusoidal_positions_follow_the_formula(d_model):
    table = sinusoidal_positions(9, d_model)
    for pos in range(9):
        for j in range(d_model):
            i = j // 2
            angle = pos / 10000 ** (2 * i / d_model)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert table[pos, j].item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("spec", [
    DataSpec("features", (6,), "reconstruction", 6), DataSpec("image", (1, 8, 8), "reconstruction", 64),
], ids=["features", "image"])
def test_vae_returns_reconstruction_mu_and_logvar(spec):
    net = build("vae", spec, latent_dim=5)
    x = torch.rand(3, *spec.input_shape)
    reconstruction, mu, logvar = net(x)
    assert reconstruction.shape == x.shape and mu.shape == logvar.shape == (3, 5)
    assert not torch.equal(net(x)[0], reconstruction)  # z is sampled in training
    net.eval()
    torch.testing.assert_close(net(x)[0], net(x)[0])  # and is mu in evaluation
    assert net.decode(torch.randn(4, 5)).shape == (4, *spec.input_shape)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_mlp_depth_width_activation_dropout(activation):
    net = build("mlp", SPECS["image"], hidden_size=17, num_layers=3, activation=activation, dropout=0.3)
    linears = [m for m in net.layers if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [17, 17, 17, 10]
    assert sum(type(m).__name__.lower() == activation for m in net.layers) == 3
    assert all(m.p == 0.3 for m in net.layers if isinstance(m, torch.nn.Dropout))
    assert net(batch(SPECS["image"])).shape == (3, 10)


@pytest.mark.parametrize("model,spec,options,named", [
    ("bow", SPECS["image"], {}, "input_kind"),
    ("bow", SPECS["features"], {}, "input_kind"),
    ("gpt", SPECS["image"], {}, "input_kind"),
    ("gpt", SPECS["tokens"], {}, "task"),
    ("vae", SPECS["tokens"], {}, "input_kind"),
    ("vae", SPECS["features"], {}, "task"),
    ("lstm", LM, {"bidirectional": True}, "set model.bidirectional=false"),
    ("gru", SPECS["tokens"], {"cell": "elman"}, "cell"),
    ("lstm", SPECS["tokens"], {"hidden_sizes": []}, "hidden_sizes"),
    ("cnn", SPECS["image"], {"kernel_size": 4}, "kernel_size"),
    ("cnn", LM, {}, "task"),
    ("mlp", LM, {}, "task"),
    ("transformer", LM, {}, "task"),
    ("mlp", SPECS["image"], {"activation": "swish"}, "activation"),
])
def test_impossible_inputs_are_refused_naming_the_argument(model, spec, options, named):
    with pytest.raises(ValueError, match=named):
        build(model, spec, **options)


def test_a_language_model_data_set_holds_tokens():
    with pytest.raises(ValueError, match="a language model reads tokens, not input_kind='features'"):
        DataSpec("features", (4,), "language_model", 4)


@pytest.mark.parametrize("args,refused,advice", [
    # the user changed the model only: which data it reads
    (["model=gpt"], "model=gpt cannot read data=digits",
     "Data that model=gpt reads: pydoc_lm (or your own: data=csv, data=hf)."),
    (["model=vae"], "model=vae cannot read data=digits", "Data that model=vae reads: digits_images"),
    # the data only (the model's own keys are not a choice of model): which models read it
    (["data=pydoc_lm", "model.hidden_size=16"], "model=mlp cannot read data=pydoc_lm",
     "Models that read data=pydoc_lm: gpt, gru, lstm, rnn."),
    # both: both lists
    (["model=bow", "data=iris"], "model=bow cannot read data=iris",
     "Models that read data=iris: cnn, gru, linear, lstm, mlp, rnn, transformer. Data that model=bow reads: "
     "listops, sentiment, sentiment_binary"),
])
def test_an_impossible_combination_is_refused_with_what_would_work_for_what_the_user_changed(
    args, refused, advice, mlruns
):
    result = run_train(args, mlruns, check=False)
    assert result.returncode == 2, result.stderr
    assert refused in result.stderr and advice in result.stderr
    assert "Traceback" not in result.stderr
    assert not (mlruns / "mlflow.db").exists()


def test_a_recurrent_head_hidden_size_puts_a_dense_relu_layer_before_the_output():
    # the documents' stacked BiLSTM 64 -> 32 -> Dense(64, relu) -> Dense(1)
    from src.models.recurrent import Recurrent

    net = Recurrent("tokens", (12,), 1, vocab_size=50, task="binary", cell="lstm", hidden_sizes=[64, 32],
                    bidirectional=True, head_hidden_size=64)
    dense, relu, output = net.head
    assert (dense.in_features, dense.out_features, output.in_features, output.out_features) == (64, 64, 64, 1)
    assert isinstance(relu, torch.nn.ReLU)
    tokens = torch.randint(1, 50, (5, 12))
    assert net(tokens).shape == (5, 1)
    plain = Recurrent("tokens", (12,), 1, vocab_size=50, task="binary", hidden_sizes=[64, 32], bidirectional=True)
    assert isinstance(plain.head, torch.nn.Linear) and plain.head.in_features == 64
