"""Writes the reference fixtures of tests/test_reference.py with the reference implementations.

Not a test and not a dependency of the project: run it by hand where PyTorch is installed, e.g.

  python3 -m venv /tmp/torchvenv
  /tmp/torchvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
  git clone https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix /tmp/cyclegan_ref
  /tmp/torchvenv/bin/python tests/reference/make_fixtures.py --cyclegan_repo /tmp/cyclegan_ref

The committed fixtures were written with Python 3.11.7, torch 2.14.1 (+cu130 wheel, run on the
CPU), torchvision 0.29.1, numpy 2.4.6, and the CycleGAN authors' `models/networks.py` at commit
78913853ab4a4f5eba717af8433809300c99f0bb (its ResnetGenerator, ResnetBlock and
NLayerDiscriminator; see `make_cyclegan` for the norm layer, which later versions changed).
Every fixture's `meta` entry (JSON) repeats the versions and settings.

Three fixtures, each small (all three < 1 MB), every array float32, images NHWC (the project's
layout; the references run NCHW), weights in the reference's own layout and names:

* `resnet_torchvision.npz` — torchvision's own `ResNet`/`Bottleneck` classes (`_make_layer`,
  torchvision's stem conv/BN/max-pool settings) at base width 4 with one bottleneck per stage and
  AGW's last stride 1 (AGW sets `layer4[0].conv2.stride` and `layer4[0].downsample[0].stride` to 1
  on a torchvision ResNet-50). Random weights and running statistics (`sd/<state-dict key>`), an
  input (`input`, 2×64×32), every stage's output in eval mode (`eval/<stage>`) and in train mode
  (`train/<stage>`, batch statistics), and the running statistics after that one train-mode
  forward (`train_sd/<key>`: PyTorch updates running_var with the *unbiased* batch variance).
* `cyclegan_reference.npz` — the authors' `ResnetGenerator` (ngf 4, 2 blocks, instance norm,
  reflection padding, transposed-conv upsampling) on 2×32×16 and their `NLayerDiscriminator`
  (ndf 4, n_layers 3) on 1×64×32: state dicts (`G/<key>`, `D/<key>`), inputs, and the output of
  every conv / transposed conv, of every residual block and of the networks (`G_out/<name>`,
  `D_out/<name>`, named as the project's modules are).
* `alexnet_caffe.npz` — Caffe's BVLC AlexNet forward written from its definition
  (models/bvlc_alexnet/deploy.prototxt): conv1 11×11/4 → ReLU → LRN (ACROSS_CHANNELS, local_size
  5, α 1e-4 divided by n, β 0.75, k 1) → max-pool 3/2 (Caffe rounds pooled sizes up: ceil mode) →
  conv2 5×5 pad 2 group 2 → ReLU → LRN → pool → conv3 3×3 pad 1 → ReLU → conv4 group 2 → ReLU →
  conv5 group 2 → ReLU → pool5 → fc6 on pool5 flattened (C, H, W) — at tiny widths (16, 32, 48,
  48, 32; fc6 64) on one 99×99 image. Input `input_uint8` (an 8-bit RGB image); the forward runs on
  Caffe's input (BGR, 0–255, minus the ImageNet mean), as `bvlc_alexnet.npy` expects. Weights `<layer>_W`
  (Caffe (out, in/group, kh, kw); fc6 (out, in)) and `<layer>_b`; outputs `out/<stage>`.

Every reference forward runs in float64 (from the float32 values stored), so the fixtures hold the
reference's answer with no float32 rounding of its own.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import Bottleneck, ResNet

HERE = os.path.dirname(os.path.abspath(__file__))
CYCLEGAN_COMMIT = "78913853ab4a4f5eba717af8433809300c99f0bb"
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)  # as ce2l_jax.models.pretrained


def versions() -> dict:
  return {"python": platform.python_version(), "torch": torch.__version__,
          "torchvision": torchvision.__version__, "numpy": np.__version__}


def nhwc(t: torch.Tensor) -> np.ndarray:
  a = t.detach().cpu().numpy()
  return (a.transpose(0, 2, 3, 1) if a.ndim == 4 else a).astype(np.float32)


def f32(t: torch.Tensor) -> np.ndarray:
  return t.detach().cpu().numpy().astype(np.float32)


def randomize(module: nn.Module, gen: torch.Generator, conv_gain: float = 1.0) -> None:
  """Random weights (float32-representable) and, for BatchNorm, random running statistics so
  that eval mode is not an identity: conv N(0, gain²·2/fan_in), BN weight N(1, 0.1²), bias and
  running_mean N(0, 0.1²), running_var U(0.5, 1.5)."""
  for m in module.modules():
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
      fan_in = m.weight[0].numel() if not isinstance(m, nn.ConvTranspose2d) else \
          m.weight.shape[0] * m.weight[0, 0].numel()
      m.weight.data = torch.randn(m.weight.shape, generator=gen) * conv_gain * (2.0 / fan_in) ** 0.5
      if m.bias is not None:
        m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=gen)
    elif isinstance(m, nn.BatchNorm2d):
      m.weight.data = 1 + 0.1 * torch.randn(m.weight.shape, generator=gen)
      m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=gen)
      m.running_mean.data = 0.1 * torch.randn(m.running_mean.shape, generator=gen)
      m.running_var.data = 0.5 + torch.rand(m.running_var.shape, generator=gen)
  for p in list(module.parameters()) + list(module.buffers()):
    if p.is_floating_point():
      p.data = p.data.float()  # round to float32: what the fixture stores is what ran


def save(name: str, arrays: dict, meta: dict) -> None:
  path = os.path.join(HERE, name)
  np.savez_compressed(path, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
  print(f"{path}: {os.path.getsize(path) / 1024:.0f} KiB, {len(arrays)} arrays")


# ------------------------------------------------------------------------------- ResNet ----


def tiny_torchvision_resnet(width: int, last_stride: int) -> ResNet:
  """torchvision's ResNet(Bottleneck, [1, 1, 1, 1]) with its stem and stages rebuilt at `width`
  by torchvision's own code: the stem conv and BN take the settings of the ones torchvision
  built (kernel, stride, padding, bias, eps, momentum); the stages come from `_make_layer`."""
  net = ResNet(Bottleneck, [1, 1, 1, 1])
  c, b = net.conv1, net.bn1
  net.conv1 = nn.Conv2d(3, width, c.kernel_size, c.stride, c.padding, bias=c.bias is not None)
  net.bn1 = type(b)(width, eps=b.eps, momentum=b.momentum)
  net.inplanes = width
  net.layer1 = net._make_layer(Bottleneck, width, 1)
  net.layer2 = net._make_layer(Bottleneck, width * 2, 1, stride=2)
  net.layer3 = net._make_layer(Bottleneck, width * 4, 1, stride=2)
  net.layer4 = net._make_layer(Bottleneck, width * 8, 1, stride=2)
  if last_stride == 1:  # AGW (and most re-ID code): layer4 keeps the resolution
    net.layer4[0].conv2.stride = (1, 1)
    net.layer4[0].downsample[0].stride = (1, 1)
  net.fc = nn.Identity()
  return net


def resnet_stages(net: ResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
  out = {}
  x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
  out["stem"] = x
  for i in range(1, 5):
    x = getattr(net, f"layer{i}")(x)
    out[f"layer{i}"] = x
  return out


def make_resnet(gen: torch.Generator) -> None:
  width, last_stride = 4, 1
  net = tiny_torchvision_resnet(width, last_stride)
  randomize(net, gen)
  sd = {k: v.clone() for k, v in net.state_dict().items()}
  x = torch.randn((2, 3, 64, 32), generator=gen).float()
  arrays = {f"sd/{k}": (v.numpy() if not v.is_floating_point() else f32(v)) for k, v in sd.items()}
  arrays["input"] = nhwc(x)
  net = net.double()
  with torch.no_grad():
    net.eval()
    for k, v in resnet_stages(net, x.double()).items():
      arrays[f"eval/{k}"] = nhwc(v)
    net.train()
    for k, v in resnet_stages(net, x.double()).items():
      arrays[f"train/{k}"] = nhwc(v)
  for k, v in net.state_dict().items():
    if k.endswith(("running_mean", "running_var")):
      arrays[f"train_sd/{k}"] = f32(v)
  bn = net.bn1
  meta = dict(versions(), model="torchvision.models.resnet.ResNet(Bottleneck, [1,1,1,1])",
              width=width, blocks=[1, 1, 1, 1], last_stride=last_stride, bn_eps=bn.eps,
              bn_momentum=bn.momentum, input_shape_nchw=list(x.shape), compute_dtype="float64",
              stages=["stem", "layer1", "layer2", "layer3", "layer4"])
  save("resnet_torchvision.npz", arrays, meta)


# ----------------------------------------------------------------------------- CycleGAN ----


def load_cyclegan_networks(repo: str):
  path = os.path.join(repo, "models", "networks.py")
  if not os.path.exists(path):
    sys.exit(f"error: {path} not found: pass --cyclegan_repo=<a checkout of "
             "github.com/junyanz/pytorch-CycleGAN-and-pix2pix>")
  spec = importlib.util.spec_from_file_location("cyclegan_networks", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def record_outputs(named: dict[str, nn.Module]):
  """Forward hooks storing each named module's output; returns (store, remove)."""
  store, handles = {}, []
  for name, m in named.items():
    handles.append(m.register_forward_hook(
        lambda mod, inp, out, name=name: store.__setitem__(name, out.detach().clone())))
  return store, lambda: [h.remove() for h in handles]


def make_cyclegan(gen: torch.Generator, repo: str) -> None:
  networks = load_cyclegan_networks(repo)
  # The authors' instance norm: no affine parameters, and no running statistics on the current
  # master (`get_norm_layer('instance')` = InstanceNorm2d(affine=False, track_running_stats=False)),
  # so eval mode normalises every image by its own statistics, as the project does. The stored
  # commit tracked running statistics (train mode then gives the same numbers); build the
  # current master's layer explicitly.
  norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
  ngf, n_blocks, ndf, n_layers = 4, 2, 4, 3
  g = networks.ResnetGenerator(3, 3, ngf, norm_layer=norm, use_dropout=False, n_blocks=n_blocks,
                               padding_type="reflect")
  d = networks.NLayerDiscriminator(3, ndf, n_layers=n_layers, norm_layer=norm, use_sigmoid=False)
  randomize(g, gen, conv_gain=0.7)
  randomize(d, gen, conv_gain=0.7)
  arrays = {f"G/{k}": f32(v) for k, v in g.state_dict().items()}
  arrays.update({f"D/{k}": f32(v) for k, v in d.state_dict().items()})
  xg = (torch.rand((2, 3, 32, 16), generator=gen) * 2 - 1).float()
  xd = (torch.rand((1, 3, 64, 32), generator=gen) * 2 - 1).float()
  arrays["G_input"], arrays["D_input"] = nhwc(xg), nhwc(xd)

  seq = g.model
  named = {"stem": seq[1], "down0": seq[4], "down1": seq[7]}
  for i in range(n_blocks):
    block = seq[10 + i]
    named[f"block{i}"] = block
    named[f"block{i}/Conv_0"] = block.conv_block[1]
    named[f"block{i}/Conv_1"] = block.conv_block[5]
  up = 10 + n_blocks
  named.update({"up0": seq[up], "up1": seq[up + 3], "head": seq[up + 7]})
  for m, kind in ((seq[0], nn.ReflectionPad2d), (seq[up + 6], nn.ReflectionPad2d),
                  (seq[up + 8], nn.Tanh), (seq[up], nn.ConvTranspose2d)):
    assert isinstance(m, kind), (m, kind)  # the layout this mapping assumes
  store, remove = record_outputs(named)
  with torch.no_grad():
    g.double().eval()
    out = g(xg.double())
  remove()
  arrays.update({f"G_out/{k}": nhwc(v) for k, v in store.items()})
  arrays["G_out/output"] = nhwc(out)

  seq = d.model
  named = {"conv0": seq[0], **{f"conv{n}": seq[2 + 3 * (n - 1)] for n in range(1, n_layers + 1)},
           "out": seq[2 + 3 * n_layers]}
  assert all(isinstance(m, nn.Conv2d) for m in named.values())
  store, remove = record_outputs(named)
  with torch.no_grad():
    d.double().eval()
    d(xd.double())
  remove()
  arrays.update({f"D_out/{k}": nhwc(v) for k, v in store.items()})
  meta = dict(versions(), source=f"junyanz/pytorch-CycleGAN-and-pix2pix models/networks.py @ "
              f"{CYCLEGAN_COMMIT}", norm="InstanceNorm2d(affine=False, track_running_stats=False)",
              ngf=ngf, n_blocks=n_blocks, ndf=ndf, n_layers=n_layers, padding_type="reflect",
              G_input_nchw=list(xg.shape), D_input_nchw=list(xd.shape), compute_dtype="float64",
              mode="eval")
  save("cyclegan_reference.npz", arrays, meta)


# ------------------------------------------------------------------------------ AlexNet ----

ALEXNET = dict(widths=(16, 32, 48, 48, 32), fc6=64, size=99)
# (kernel, stride, pad, group) of conv1..conv5, as in deploy.prototxt.
CONVS = ((11, 4, 0, 1), (5, 1, 2, 2), (3, 1, 1, 1), (3, 1, 1, 2), (3, 1, 1, 2))


def caffe_lrn(x: torch.Tensor, n: int = 5, alpha: float = 1e-4, beta: float = 0.75,
              k: float = 1.0) -> torch.Tensor:
  """Caffe LRN ACROSS_CHANNELS: x / (k + α/n Σ_{window of n channels centred on c} x²)^β."""
  sq = F.pad(x * x, (0, 0, 0, 0, (n - 1) // 2, n // 2))  # zero channels beyond the edges
  window = sum(sq[:, i:i + x.shape[1]] for i in range(n))
  return x / (k + alpha / n * window) ** beta


def caffe_pool(x: torch.Tensor) -> torch.Tensor:
  """Caffe max-pool 3/2: pooled size ceil((H − 3)/2) + 1 (ceil_mode)."""
  return F.max_pool2d(x, 3, 2, ceil_mode=True)


def caffe_alexnet(z: torch.Tensor, W: dict) -> dict[str, torch.Tensor]:
  out, x = {}, z
  for i, (k, s, p, g) in enumerate(CONVS, start=1):
    x = F.conv2d(x, W[f"conv{i}_W"], W[f"conv{i}_b"], stride=s, padding=p, groups=g)
    out[f"conv{i}"] = x
    x = F.relu(x)
    if i in (1, 2):
      x = caffe_lrn(x)
      out[f"norm{i}"] = x
    if i in (1, 2, 5):
      floor = F.max_pool2d(x, 3, 2, ceil_mode=False)
      x = caffe_pool(x)
      assert x.shape == floor.shape, "pick a size where Caffe's ceil pooling equals floor"
      out[f"pool{i}"] = x
  out["fc6"] = x.reshape(x.shape[0], -1) @ W["fc6_W"].T + W["fc6_b"]  # (C, H, W) flatten
  return out


def make_alexnet(gen: torch.Generator) -> None:
  widths, size = ALEXNET["widths"], ALEXNET["size"]
  W, cin = {}, 3
  for i, ((k, s, p, g), cout) in enumerate(zip(CONVS, widths), start=1):
    fan_in = cin // g * k * k
    gain = 0.05 if i == 1 else (2.0 / fan_in) ** 0.5  # conv1 outputs ~±60 on Caffe's 0–255 input
    W[f"conv{i}_W"] = (torch.randn((cout, cin // g, k, k), generator=gen) * gain).float()
    W[f"conv{i}_b"] = (torch.randn((cout,), generator=gen) * 0.5).float()
    cin = cout
  # An 8-bit RGB image (NHWC), as the pipeline decodes one; u in [0, 1].
  pixels = torch.randint(0, 256, (1, size, size, 3), generator=gen, dtype=torch.uint8)
  u = pixels.double() / 255.0
  # Caffe's input: BGR, 0–255, minus the mean; NCHW.
  z = (255.0 * u.double().flip(-1) - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64))
  z = z.permute(0, 3, 1, 2).contiguous()
  with torch.no_grad():  # fc6's input width: pool5's size, from a forward to pool5
    x = z.float()
    for i, (k, s, p, g) in enumerate(CONVS, start=1):
      x = F.relu(F.conv2d(x, W[f"conv{i}_W"], W[f"conv{i}_b"], stride=s, padding=p, groups=g))
      if i in (1, 2, 5):
        x = caffe_pool(x)
    n_in = x[0].numel()
  W["fc6_W"] = (torch.randn((ALEXNET["fc6"], n_in), generator=gen) * (2.0 / n_in) ** 0.5).float()
  W["fc6_b"] = (torch.randn((ALEXNET["fc6"],), generator=gen) * 0.5).float()
  with torch.no_grad():
    # A slow check of the LRN above against the prototxt's formula, channel by channel.
    t = torch.randn((1, 7, 2, 3), generator=gen, dtype=torch.float64) * 30
    want = torch.stack([t[:, c] / (1 + 1e-4 / 5 * (t[:, max(0, c - 2):c + 3] ** 2).sum(1)) ** 0.75
                        for c in range(7)], 1)
    assert torch.allclose(caffe_lrn(t), want, rtol=1e-12)
    assert torch.allclose(caffe_lrn(t), F.local_response_norm(t, 5, 1e-4, 0.75, 1.0), rtol=1e-12)
    out = caffe_alexnet(z, {k: v.double() for k, v in W.items()})
  arrays = {k: f32(v) for k, v in W.items()}
  arrays["input_uint8"] = pixels.numpy()
  keep = ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6")  # the model's named outputs
  arrays.update({f"out/{k}": nhwc(out[k]) for k in keep})
  meta = dict(versions(), definition="BVLC AlexNet deploy.prototxt (conv1..fc6), Caffe semantics "
              "in torch ops", widths=list(widths), fc6=ALEXNET["fc6"], input_hw=[size, size],
              lrn=dict(local_size=5, alpha=1e-4, beta=0.75, k=1.0, region="ACROSS_CHANNELS"),
              pooling="max 3/2, ceil mode (equal to floor at this size)",
              caffe_input="BGR, 0-255, minus per-channel mean " + str(CAFFE_MEAN_BGR),
              compute_dtype="float64", stages=list(keep))
  save("alexnet_caffe.npz", arrays, meta)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--cyclegan_repo", required=True,
                  help="a checkout of github.com/junyanz/pytorch-CycleGAN-and-pix2pix")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args()
  torch.set_num_threads(1)
  make_resnet(torch.Generator().manual_seed(args.seed))
  make_cyclegan(torch.Generator().manual_seed(args.seed + 1), args.cyclegan_repo)
  make_alexnet(torch.Generator().manual_seed(args.seed + 2))


if __name__ == "__main__":
  main()
