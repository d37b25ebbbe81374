"""The tutorial's script, as written, made runnable on a given data root.

This is the yardstick: tests compare the engine with it number for number,
and benchmarks time the engine against its ``DataLoader`` + ``ToTensor`` loop.

    python benchmarks/tutorial_reference.py --data-dir DIR --epochs 2 --seed 0
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


def make_loaders(root, batch_size=64):
    training_data = datasets.FashionMNIST(
        root=root, train=True, download=False, transform=ToTensor()
    )
    test_data = datasets.FashionMNIST(root=root, train=False, download=False, transform=ToTensor())
    return DataLoader(training_data, batch_size=batch_size), DataLoader(
        test_data, batch_size=batch_size
    )


def train_loop(dataloader, model, loss_fn, optimizer, print_fn=print, losses=None):
    size = len(dataloader.dataset)
    for batch, (X, y) in enumerate(dataloader):
        pred = model(X)
        loss = loss_fn(pred, y)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        if losses is not None:
            losses.append(loss.item())
        if batch % 100 == 0:
            loss, current = loss.item(), batch * len(X)
            print_fn(f"loss: {loss:>7f}  [{current:>5d}/{size:>5d}]")


def test_loop(dataloader, model, loss_fn, print_fn=print):  # noqa: PT028 - the tutorial's name
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    test_loss, correct = 0, 0

    with torch.no_grad():
        for X, y in dataloader:
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()

    test_loss /= num_batches
    correct /= size
    print_fn(f"Test Error: \n Accuracy: {(100 * correct):>0.1f}%, Avg loss: {test_loss:>8f} \n")
    return test_loss, correct


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    if args.seed is not None:
        torch.manual_seed(args.seed)  # the "first statement" of the script
    train_dataloader, test_dataloader = make_loaders(args.data_dir, args.batch_size)
    model = NeuralNetwork()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    for t in range(args.epochs):
        print(f"Epoch {t + 1}\n-------------------------------")
        train_loop(train_dataloader, model, loss_fn, optimizer)
        test_loop(test_dataloader, model, loss_fn)
    print("Done!")


if __name__ == "__main__":
    main()
