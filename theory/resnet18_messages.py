"""ResNet-18 by messages: every message of its backward pass, and its gradients against PyTorch.

The architecture of torchvision's ``resnet18()`` (random initialisation, no download): a 7×7/2
convolution to 64 channels, BatchNorm, ReLU and a 3×3/2 max pool; four stages of two basic
blocks (64, 128, 256, 512 channels, the last three starting with stride 2 and a 1×1
downsampling branch); global average pooling and a linear layer to 1,000 classes. torchvision
is used when it imports; otherwise the same architecture is built here (torchvision is needed
for nothing else, and its wheels must match the installed torch).

The model is imported with ``mp.from_torch`` in eval mode (BatchNorm elementwise, from running
statistics), every message of the backward of the cross-entropy loss is computed with
``keep="sums"`` under the default budget, and the gradients of all 62 parameter tensors and
of the input are compared with torch autograd in float64. Two runs: a batch of 2 CIFAR-sized
3×32×32 inputs, and one ImageNet-sized 3×224×224 input. Prints the message count, the time,
the peak memory and the worst relative difference (per array, relative to its largest entry).

    python theory/resnet18_messages.py [--sizes 32 224]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

import msgpass as mp


def resnet18():
    """torchvision's resnet18() if torchvision imports, else the same architecture here."""
    try:
        from torchvision.models import resnet18 as torchvision_resnet18
        return torchvision_resnet18(), "torchvision"
    except Exception:                                        # absent, or built for another torch
        pass
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                                nn.BatchNorm2d(c_out))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            stages, c_in = [], 64
            for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride),
                                            BasicBlock(c_out, c_out, 1)))
                c_in = c_out
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet18(), "built here (torchvision's architecture)"


def run(size: int, batch: int, seed: int = 0) -> None:
    import torch
    from torch import nn
    torch.manual_seed(seed)
    module, source = resnet18()
    module = module.double().eval()
    with torch.no_grad():                     # running statistics that are not the identity
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, size, size))
    y = rng.integers(0, 1000, batch)
    model = mp.from_torch(module, x, nn.CrossEntropyLoss())
    start = time.perf_counter()
    model.forward(x, target=y)
    trace = model.backward(seed="mean", keep="sums")
    seconds = time.perf_counter() - start
    # every message the pass sent (none kept): each edge's count, from its partials
    messages = sum(J.message_count(batch) for partials in trace.partials.values()
                   for J in partials.inputs)
    xt = torch.tensor(x, requires_grad=True)
    nn.CrossEntropyLoss()(module(xt), torch.from_numpy(y)).backward()
    worst, names = 0.0, 0
    for name, p in module.named_parameters():
        expected = p.grad.numpy()
        worst = max(worst, float(np.max(np.abs(trace.grads[name] - expected))
                                 / np.max(np.abs(expected))))
        names += 1
    dx = np.asarray(trace.grad("x")).reshape(x.shape)
    expected = xt.grad.numpy()
    worst = max(worst, float(np.max(np.abs(dx - expected)) / np.max(np.abs(expected))))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"ResNet-18 ({source}), batch {batch} of 3×{size}×{size}, eval mode: "
          f"{messages:,} messages, forward + message backward {seconds:.1f} s, peak memory "
          f"{peak:.2f} GiB; {names} parameter tensors and ∂L/∂x against torch autograd: worst "
          f"relative difference {worst:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    args = parser.parse_args()
    for size in args.sizes:
        run(size, 2 if size <= 64 else 1)


if __name__ == "__main__":
    main()
