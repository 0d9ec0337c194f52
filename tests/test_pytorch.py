"""Importing PyTorch modules (issue 18, in progress): gradients against torch autograd in
float64, ≤ 1e-12 relative to the model's largest gradient (an array that is zero up to
round-off, a bias feeding a training-mode BatchNorm, is judged against that)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import msgpass as mp  # noqa: E402
from msgpass.pytorch import TorchImportError, from_torch  # noqa: E402


def _compare(module, x, y):
    module = module.double()
    net = from_torch(module, x, loss=nn.CrossEntropyLoss())
    loss = net.forward(x, y)
    trace = net.backward(keep="sums")
    xt = torch.tensor(x, requires_grad=True)
    expected = nn.CrossEntropyLoss()(module(xt), torch.from_numpy(y))
    expected.backward()
    assert abs(loss - expected.item()) <= 1e-12 * abs(expected.item())
    largest = max(float(p.grad.abs().max()) for p in module.parameters())
    for name, p in module.named_parameters():
        assert net.params[name].shape == p.shape          # torch's names, torch's shapes
        assert np.max(np.abs(trace.grads[name] - p.grad.numpy())) <= 1e-12 * largest, name
    scale = float(xt.grad.abs().max())
    dx = trace.grad(net.input_name)                       # "input" for an nn.Sequential
    assert np.max(np.abs(dx - xt.grad.numpy())) <= 1e-12 * scale
    return net


def test_an_mlp_sequential():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    mlp = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))
    net = _compare(mlp, rng.standard_normal((4, 6)), rng.integers(0, 3, 4))
    assert net.input_name == "input" and net.params["0.weight"].shape == (8, 6)
    assert mp.verify(net, rng.standard_normal((4, 6)), rng.integers(0, 3, 4)).ok
    # the weights are copies: editing the torch module afterwards changes nothing here
    before = net.params["0.weight"].copy()
    with torch.no_grad():
        mlp[0].weight.add_(1.0)
    np.testing.assert_array_equal(net.params["0.weight"], before)
    # and the shown weight is a view: writing into it changes the layer
    net.params["0.weight"][0, 1] = 7.0
    assert net.layers[0].params["W"][1, 0] == 7.0


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.bn = nn.BatchNorm2d(6)
        self.avg = nn.AvgPool2d(2)
        self.fc = nn.Linear(6, 3, bias=False)

    def forward(self, x):
        h = self.pool(F.relu(self.conv1(x)))
        h = self.avg(torch.tanh(self.bn(self.conv2(h))))
        return self.fc(h.flatten(1))


@pytest.mark.parametrize("train", [True, False])
def test_a_cnn_with_functional_calls_and_batchnorm(train):
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    cnn = CNN().train(train)
    _compare(cnn, rng.standard_normal((3, 1, 8, 8)), rng.integers(0, 3, 3))


def test_what_is_not_imported_is_refused_naming_the_node():
    class Sine(nn.Module):
        def forward(self, x):
            return torch.sin(x)

    with pytest.raises(TorchImportError, match="cannot import sin .*fx node 'sin'"):
        from_torch(Sine(), np.zeros((2, 3)), nn.CrossEntropyLoss())


class Block(nn.Module):
    """A residual block with BatchNorm2d, torch.cat, a slice, a product by a constant and
    functional calls."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 3, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 + 2, 3)

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        h = F.relu(self.b2(self.c2(h)) + x)
        h = torch.cat([h, x[:, :2] * 2.0], dim=1)
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.fc(h)


@pytest.mark.parametrize("train", [False, True])
def test_a_residual_block_becomes_a_graph_with_torchs_gradients(train):
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    block = Block().double().train(train)
    if not train:
        for bn in (block.b1, block.b2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2)
    x, y = rng.standard_normal((3, 3, 6, 6)), rng.integers(0, 3, 3)
    graph = from_torch(block, x, nn.CrossEntropyLoss())
    assert isinstance(graph, mp.Graph)
    loss = graph.forward(x, target=y)
    trace = graph.backward(seed="mean")
    xt = torch.tensor(x, requires_grad=True)
    expected = nn.CrossEntropyLoss()(block(xt), torch.from_numpy(y))
    expected.backward()
    assert abs(loss - expected.item()) <= 1e-12 * abs(expected.item())
    largest = max(float(p.grad.abs().max()) for p in block.parameters())
    for name, p in block.named_parameters():
        assert graph.params[name].shape == p.shape
        assert np.max(np.abs(trace.grads[name] - p.grad.numpy())) <= 1e-12 * largest, name
    dx = np.asarray(trace.grad("x")).reshape(x.shape)
    assert np.max(np.abs(dx - xt.grad.numpy())) <= 1e-12 * float(xt.grad.abs().max())
    assert mp.verify(graph, graph.torch_output, seed="mean").ok


@pytest.mark.parametrize("loss, classes", [
    (nn.CrossEntropyLoss(reduction="sum"), True), (nn.NLLLoss(), True),
    (nn.NLLLoss(reduction="sum"), True), (nn.MSELoss(), False), (nn.MSELoss(reduction="sum"),
                                                                   False)])
def test_torchs_losses_are_computed_exactly_as_torch_does(loss, classes):
    """MSELoss is the mean over all B·N entries with no ½; reduction "sum" has no 1/B."""
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    layers = [nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)]
    if isinstance(loss, nn.NLLLoss):
        layers.append(nn.LogSoftmax(dim=1))
    module = nn.Sequential(*layers).double()
    x = rng.standard_normal((4, 5))
    target = rng.integers(0, 3, 4) if classes else rng.standard_normal((4, 3))
    net = from_torch(module, x, loss)
    value = net.forward(x, target)
    trace = net.backward()
    expected = loss(module(torch.tensor(x)), torch.tensor(target))
    expected.backward()
    assert abs(value - expected.item()) <= 1e-12 * abs(expected.item())
    for name, p in module.named_parameters():
        assert np.max(np.abs(trace.grads[name] - p.grad.numpy())) <= \
            1e-12 * float(p.grad.abs().max())
    assert mp.verify(net, x, target).ok


@pytest.mark.parametrize("module, shape", [(CNN, (1, 8, 8)), (Block, (3, 6, 6))])
def test_round_trip_train_by_messages_then_export(module, shape):
    """Import, train 50 steps by messages in msgpass, export with to_torch: the exported
    module computes what msgpass does (BatchNorm's running statistics included)."""
    from msgpass.pytorch import to_torch
    from msgpass.training.data import Dataset
    torch.manual_seed(4)
    rng = np.random.default_rng(4)
    original = module().double()
    x, y = rng.standard_normal((16, *shape)), rng.integers(0, 3, 16)
    model = from_torch(original, x[:4], nn.CrossEntropyLoss())
    mp.train(model, mp.optim.Adam(model.params, lr=1e-2),
             Dataset(x.reshape(16, -1), y, "toy"), epochs=13, batch_size=4, steps=50)
    exported = to_torch(model).eval()
    model.eval()
    ours = np.asarray(model.predict(x[:5])).reshape(5, -1)
    theirs = exported(torch.tensor(x[:5])).detach().numpy()
    assert np.max(np.abs(ours - theirs)) <= 1e-12 * np.max(np.abs(theirs))
    # the original module was not touched by the training
    assert not np.allclose(original.state_dict()[next(iter(model.params))].numpy(),
                           exported.state_dict()[next(iter(model.params))].numpy())


def test_pytorch_is_one_more_witness_of_verify():
    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    cnn = CNN().double()
    x, y = rng.standard_normal((3, 1, 8, 8)), rng.integers(0, 3, 3)
    net = from_torch(cnn, x, nn.CrossEntropyLoss())
    report = mp.verify(net, x, y, witnesses=["backprop", "numeric", "torch"])
    assert report.ok and "PyTorch autograd's" in report.verdict()
    torch_checks = [c for c in report.checks if c.witness == "torch"]
    assert {c.claim for c in torch_checks} >= {"S^1 = ∂L/∂x (torch)",
                                               "∂L/∂conv1.weight (torch)"}
    block = Block().double()
    x = rng.standard_normal((3, 3, 6, 6))
    graph = from_torch(block, x, nn.CrossEntropyLoss())
    graph.forward(x, target=y)
    report = mp.verify(graph, graph.torch_output, seed="mean", witnesses=["backprop", "torch"])
    assert report.ok and sum(c.witness == "torch" for c in report.checks) == 9


def test_without_a_loss_a_chain_imports_as_a_graph_taking_a_seed():
    torch.manual_seed(6)
    rng = np.random.default_rng(6)
    mlp = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = rng.standard_normal((3, 4))
    graph = mp.from_torch(mlp, x)
    assert isinstance(graph, mp.Graph)
    seed = rng.standard_normal((3, 2))
    trace = graph.backward(graph.torch_output, seed=seed)
    xt = torch.tensor(x, requires_grad=True)
    mlp(xt).backward(torch.tensor(seed))
    for name, p in mlp.named_parameters():
        np.testing.assert_allclose(trace.grads[name], p.grad.numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(trace.grad("input"), xt.grad.numpy(), rtol=1e-12, atol=0)


def test_modules_fx_cannot_trace_and_training_dropout_are_refused():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x         # control flow on a value

    with pytest.raises(TorchImportError, match="torch.fx could not trace Branchy"):
        from_torch(Branchy(), np.zeros((2, 3)), nn.CrossEntropyLoss())
    dropping = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    with pytest.raises(TorchImportError, match="Dropout in training mode"):
        from_torch(dropping, np.zeros((2, 3)), nn.CrossEntropyLoss())
    net = from_torch(dropping.eval().double(), np.zeros((2, 3)), nn.CrossEntropyLoss())
    assert net.labels == ["Affine(3→3)", "SoftmaxCrossEntropy"]      # eval: the identity


def test_resnet18_at_cifar_size_matches_torch_and_verifies():
    """The research script's ResNet-18 (torchvision's architecture), eval mode, a batch of 2
    3×32×32 inputs: all 62 parameter gradients and ∂L/∂x against torch autograd."""
    import importlib.util
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "theory" / "resnet18_messages.py"
    spec = importlib.util.spec_from_file_location("resnet18_messages", script)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    torch.manual_seed(0)
    module = study.resnet18()[0].double().eval()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 3, 32, 32)), rng.integers(0, 1000, 2)
    model = from_torch(module, x, nn.CrossEntropyLoss())
    model.forward(x, target=y)
    trace = model.backward(seed="mean", keep="sums")
    xt = torch.tensor(x, requires_grad=True)
    nn.CrossEntropyLoss()(module(xt), torch.from_numpy(y)).backward()
    params = dict(module.named_parameters())
    assert len(params) == 62 and set(trace.grads) == set(params)
    for name, p in params.items():
        assert np.max(np.abs(trace.grads[name] - p.grad.numpy())) <= \
            1e-12 * float(p.grad.abs().max()), name
    report = mp.verify(model, model.torch_output, seed="mean", witnesses=["backprop", "torch"])
    assert report.ok, report.verdict()


def test_float32_batchnorm1d_tensor_input_and_a_drawing():
    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    mlp = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Sigmoid(), nn.Linear(6, 3),
                        nn.Softmax(dim=1))
    x = rng.standard_normal((5, 4)).astype(np.float32)
    model = from_torch(mlp, torch.tensor(x), nn.MSELoss(), dtype="float32")   # a tensor too
    assert model.dtype == np.float32 and model.params["1.weight"].dtype == np.float32
    target = rng.standard_normal((5, 3)).astype(np.float32)
    value = model.forward(x, target)
    assert abs(value - nn.MSELoss()(mlp(torch.tensor(x)), torch.tensor(target)).item()) \
        <= 1e-6 * abs(value)
    assert mp.verify(model, x, target).ok
    from msgpass.draw import draw_graph  # an imported graph draws like any graph
    graph = from_torch(Block().double().eval(), rng.standard_normal((2, 3, 6, 6)),
                       nn.CrossEntropyLoss())
    graph.forward(rng.standard_normal((2, 3, 6, 6)), target=[0, 1])
    figure = draw_graph(graph.backward(seed="mean"))
    assert figure.axes


def test_without_torch_from_torch_says_how_to_install_it(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "torch", None)            # as if it were not installed
    with pytest.raises(TorchImportError, match=r"pip install 'msgpass\[torch\]'"):
        mp.from_torch(object(), np.zeros((1, 2)))


class Functional(nn.Module):
    """Functional and tensor-method forms, a reshape by x.size(0), and a residual."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 2 * 2, 3)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv(x)), 2)
        h = F.avg_pool2d(h, 1) + h
        h = h.view(h.size(0), -1)
        return F.log_softmax(self.fc(F.dropout(h, training=False)), dim=1)


def test_imported_graphs_default_to_the_batch_mean_and_verify_like_networks():
    """A reviewer found: an imported graph's backward() and verify(model, x, target) must
    mean what they mean for a network (the gradient of torch's batch-mean loss)."""
    torch.manual_seed(8)
    rng = np.random.default_rng(8)
    module = Functional().double()
    x, y = rng.standard_normal((3, 1, 6, 6)), rng.integers(0, 3, 3)
    model = from_torch(module, x, nn.NLLLoss())
    assert isinstance(model, mp.Graph)
    model.forward(x, y)
    trace = model.backward()                             # no seed: the batch mean's gradient
    xt = torch.tensor(x, requires_grad=True)
    nn.NLLLoss()(module(xt), torch.from_numpy(y)).backward()
    for name, p in module.named_parameters():
        np.testing.assert_allclose(trace.grads[name], p.grad.numpy(), rtol=1e-12,
                                   atol=1e-12 * float(p.grad.abs().max()))
    np.testing.assert_allclose(np.asarray(trace.grad("x")).reshape(x.shape),
                               xt.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert mp.verify(model, x, y, witnesses=["backprop", "numeric", "torch"]).ok


def test_shared_modules_are_refused_and_to_torch_keeps_the_class():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            h = self.a(x)
            return self.b(h + x) + self.b(h)

    with pytest.raises(TorchImportError, match="second call of module 'b'"):
        from_torch(Shared().double(), np.zeros((2, 3)), nn.CrossEntropyLoss())
    model = from_torch(nn.Sequential(nn.Linear(3, 2)).double(), np.zeros((2, 3)),
                       nn.CrossEntropyLoss())
    exported = mp.to_torch(model)
    assert isinstance(exported, nn.Sequential) and isinstance(exported[0], nn.Linear)
