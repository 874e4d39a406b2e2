"""PyTorch side of benches/compare.sh: torchvision's mobilenet_v2 features + GAP +
Linear(1280, 256) + ReLU + Linear(256, 15), random weights, Adam, cross-entropy. Frozen layers are
put in eval mode (batch-norm on moving statistics), as Keras does for a frozen base; inference
runs under torch.inference_mode. NCHW, PyTorch's native layout."""

import torch
import torchvision

from common import measure, parse_args, report


def main():
    args = parse_args()
    torch.manual_seed(0)
    n, s = args.batch, args.size
    features = torchvision.models.mobilenet_v2(weights=None).features
    head = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(1280, 256), torch.nn.ReLU(), torch.nn.Linear(256, 15))
    model = torch.nn.Sequential(features, head)
    x = torch.rand(n, 3, s, s) * 2 - 1
    y = torch.arange(n) % 15
    if args.task == "infer":
        model.eval()

        def step():
            with torch.inference_mode():
                model(x)

        t, iters = measure(args, step)
    else:
        # Keras's last 3 base layers (Conv_1, Conv_1_bn, out_relu) are torchvision's features[18].
        trainable = {"train-a": [], "train-b": [features[18]], "train-c": [features]}[args.task]
        for p in features.parameters():
            p.requires_grad_(False)
        features.eval()
        for m in trainable:
            m.train()
            for p in m.parameters():
                p.requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=1e-5, eps=1e-7)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            loss.item()

        t, iters = measure(args, step)
    report("pytorch", args, t, iters)


if __name__ == "__main__":
    main()
