from torch import nn


class Mlp(nn.Module):
    """Linear -> exact GELU -> Linear, dropout after each (the official ``mlp.fc1`` / ``mlp.fc2``
    names of NAT / DiNAT and GroupMixFormer)."""

    def __init__(self, embed_dims, hidden_dims, drop=0.):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, embed_dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
