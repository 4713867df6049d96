"""PyTorch twins of `bench_steps.py`'s train steps, for its optional comparison column.

  <python with torch + torchvision> benchmarks/torch_twins.py {alexnet|resnet|cyclegan} N STEPS

Not part of the project (it never imports torch): run by `bench_steps.py --torch_python PY`.
Prints one JSON line: img/s, step and forward seconds, and the same process's float32 2048²
matmul GFLOP/s — wall and process CPU time each. The twins have the project's shapes and layer settings (NCHW, as PyTorch runs
best): BDTR's two AlexNet streams (conv1–fc6 + BN, groups 2 in conv2/4/5, LRN, max-pool) with
the shared fc7/fc8; torchvision's ResNet-50 with modality-specific stems, last stride 1, GeM,
BN-neck and classifier; the reference CycleGAN ResNet-9 generators (reflection pad, instance
norm, transposed convs) and 70×70 PatchGANs with LSGAN, cycle and identity losses and Adam.
The re-ID loss is cross-entropy + a batch-hard triplet (the cost of CE²L's ranking terms is
negligible next to the networks'); optimiser SGD with momentum, as in bench_steps.
"""

import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def alexnet_stream():
  return nn.Sequential(
      nn.Conv2d(3, 96, 11, 4), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
      nn.MaxPool2d(3, 2),
      nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75),
      nn.MaxPool2d(3, 2),
      nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
      nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
      nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
      nn.Flatten(), nn.Linear(9216, 4096), nn.BatchNorm1d(4096))


class BDTR(nn.Module):
  def __init__(self, classes):
    super().__init__()
    self.v, self.t = alexnet_stream(), alexnet_stream()
    self.fc7, self.fc8 = nn.Linear(4096, 1024), nn.Linear(1024, classes)

  def forward(self, xv, xt):
    x = torch.cat([self.v(xv), self.t(xt)])
    emb = self.fc7(F.relu(F.dropout(x, 0.5, self.training)))
    return emb, self.fc8(F.dropout(F.relu(emb), 0.5, self.training))


class AGW(nn.Module):
  def __init__(self, classes):
    super().__init__()
    r = [torchvision.models.resnet50() for _ in range(2)]
    r[0].layer4[0].conv2.stride = (1, 1)
    r[0].layer4[0].downsample[0].stride = (1, 1)
    self.stems = nn.ModuleList(nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool) for m in r)
    self.body = nn.Sequential(r[0].layer1, r[0].layer2, r[0].layer3, r[0].layer4)
    self.neck = nn.BatchNorm1d(2048)
    self.cls = nn.Linear(2048, classes, bias=False)

  def forward(self, xv, xt):
    x = self.body(torch.cat([self.stems[0](xv), self.stems[1](xt)]))
    feat = x.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)
    return feat, self.cls(self.neck(feat))


def reid_loss(feat, logits, pids):
  d = torch.cdist(feat, feat)
  same = pids[:, None] == pids[None]
  ap = (d * same).max(1).values
  an = (d + 1e6 * same).min(1).values
  return F.cross_entropy(logits, pids) + F.relu(ap - an + 0.3).mean()


class ResnetBlock(nn.Module):
  def __init__(self, c):
    super().__init__()
    self.b = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c),
                           nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3),
                           nn.InstanceNorm2d(c))

  def forward(self, x):
    return x + self.b(x)


def generator(ngf=64, blocks=9):
  m = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
  for i in range(2):
    c = ngf * 2 ** i
    m += [nn.Conv2d(c, 2 * c, 3, 2, 1), nn.InstanceNorm2d(2 * c), nn.ReLU(True)]
  m += [ResnetBlock(4 * ngf) for _ in range(blocks)]
  for i in range(2):
    c = ngf * 2 ** (2 - i)
    m += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(c // 2),
          nn.ReLU(True)]
  m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
  return nn.Sequential(*m)


def discriminator(ndf=64):
  m = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
  for n in range(1, 4):
    s = 2 if n < 3 else 1
    m += [nn.Conv2d(ndf * min(2 ** (n - 1), 8), ndf * min(2 ** n, 8), 4, s, 1),
          nn.InstanceNorm2d(ndf * min(2 ** n, 8)), nn.LeakyReLU(0.2, True)]
  m += [nn.Conv2d(ndf * 8, 1, 4, 1, 1)]
  return nn.Sequential(*m)


def timed(f, repeats):
  """(median wall s, median process CPU s) after one warm-up call."""
  f()
  ts, cs = [], []
  for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    f()
    ts.append(time.perf_counter() - t)
    cs.append(time.process_time() - c)
  return float(np.median(ts)), float(np.median(cs))


def dot_gflops():
  """float32 2048² matmul: (GFLOP/s wall, GFLOP per CPU-second)."""
  a = torch.randn(2048, 2048)
  wall, cpu = timed(lambda: a @ a, 5)
  return 2 * 2048 ** 3 / wall / 1e9, 2 * 2048 ** 3 / cpu / 1e9


def main():
  net, n, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
  torch.manual_seed(0)
  d0 = dot_gflops()
  if net in ("alexnet", "resnet"):
    h, w = (227, 227) if net == "alexnet" else (288, 144)
    model = BDTR(395) if net == "alexnet" else AGW(395)
    model.train()
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
    xv, xt = torch.randn(n, 3, h, w), torch.randn(n, 3, h, w)
    pids = torch.arange(2 * n) // 2

    def loss():
      feat, logits = model(xv, xt)
      return reid_loss(feat, logits, pids)
  else:
    gens, discs = [generator(), generator()], [discriminator(), discriminator()]
    og = torch.optim.Adam([p for g in gens for p in g.parameters()], 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam([p for d in discs for p in d.parameters()], 2e-4, betas=(0.5, 0.999))
    x, y = torch.rand(n, 3, 128, 64) * 2 - 1, torch.rand(n, 3, 128, 64) * 2 - 1
    mse = lambda a, t: ((a - t) ** 2).mean()

    def g_loss():
      G, Fn = gens
      fake_ir, fake_rgb = G(x), Fn(y)
      total = (mse(discs[1](fake_ir), 1) + mse(discs[0](fake_rgb), 1)
               + 10 * (Fn(fake_ir) - x).abs().mean() + 10 * (G(fake_rgb) - y).abs().mean()
               + 5 * (G(y) - y).abs().mean() + 5 * (Fn(x) - x).abs().mean())
      return total, fake_rgb.detach(), fake_ir.detach()

    def d_loss(fake_rgb, fake_ir):
      return (0.5 * (mse(discs[0](x), 1) + mse(discs[0](fake_rgb), 0))
              + 0.5 * (mse(discs[1](y), 1) + mse(discs[1](fake_ir), 0)))

  def step():
    if net == "cyclegan":
      og.zero_grad()
      lg, fr, fi = g_loss()
      lg.backward()
      og.step()
      od.zero_grad()
      d_loss(fr, fi).backward()
      od.step()
    else:
      opt.zero_grad()
      loss().backward()
      opt.step()

  def forward():
    with torch.no_grad():
      if net == "cyclegan":
        _, fr, fi = g_loss()
        d_loss(fr, fi)
      else:
        loss()

  fwd_s, fwd_cpu = timed(forward, steps)
  step_s, step_cpu = timed(step, steps)
  d1 = dot_gflops()
  print(json.dumps(dict(net=net, batch=n, torch=torch.__version__, threads=torch.get_num_threads(),
                        step_s=step_s, step_cpu_s=step_cpu, fwd_s=fwd_s, fwd_cpu_s=fwd_cpu,
                        img_s=2 * n / step_s, img_per_cpu_s=2 * n / step_cpu,
                        dot_gflops=(d0[0] + d1[0]) / 2, dot_gflops_cpu=(d0[1] + d1[1]) / 2,
                        load=os.getloadavg()[0])))


if __name__ == "__main__":
  main()
