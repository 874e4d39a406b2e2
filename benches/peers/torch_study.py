"""The study's step 3 in PyTorch, for the end-to-end wall time in benches/compare.sh --e2e: the
same recipe as tf_study.py (x/255, rotation 20, shifts 0.2, zoom 0.2, horizontal flip, batch 32,
torchvision's mobilenet_v2 features with its last block (Keras's last 3 layers) trainable + GAP +
Linear(256) + ReLU + Linear(classes), Adam 1e-4, 10 epochs with validation, then test accuracy).
Random base weights (the wall time does not depend on them)."""

import argparse
import os

import torch
import torchvision
from torchvision import transforms


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    torch.manual_seed(0)
    aug = transforms.Compose([
        transforms.Resize((224, 224)),
        transforms.RandomAffine(degrees=20, translate=(0.2, 0.2), scale=(0.8, 1.2)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),  # x/255, as the study's rescale
    ])
    plain = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor()])
    folder = torchvision.datasets.ImageFolder
    train = folder(os.path.join(args.data, "train"), aug)
    valid = folder(os.path.join(args.data, "valid"), plain)
    test = folder(os.path.join(args.data, "test"), plain)
    loader = torch.utils.data.DataLoader
    workers = dict(num_workers=2, persistent_workers=True)
    train_l = loader(train, batch_size=32, shuffle=True, **workers)
    valid_l = loader(valid, batch_size=32, **workers)
    test_l = loader(test, batch_size=32, **workers)
    features = torchvision.models.mobilenet_v2(weights=None).features
    head = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(1280, 256), torch.nn.ReLU(), torch.nn.Linear(256, len(train.classes)))
    model = torch.nn.Sequential(features, head)
    for p_ in features.parameters():
        p_.requires_grad_(False)
    for p_ in features[18].parameters():
        p_.requires_grad_(True)
    params = [p_ for p_ in model.parameters() if p_.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()

    def accuracy(dl):
        model.eval()
        right = total = 0
        with torch.inference_mode():
            for x, y in dl:
                right += (model(x).argmax(1) == y).sum().item()
                total += len(y)
        return right / max(total, 1)

    for epoch in range(args.epochs):
        model.train()
        features.eval()  # frozen batch-norms on moving statistics, as Keras
        features[18].train()
        for x, y in train_l:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} val_accuracy {accuracy(valid_l):.4f}", flush=True)
    print(f"test accuracy {accuracy(test_l):.4f}")


if __name__ == "__main__":
    main()
