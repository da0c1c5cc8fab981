"""Models with exact log p(x), written in raw Pyro, shared by the estimator tests."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

D, Q = 5, 2


class PPCA:
    """Probabilistic PCA: z ~ N(0, I_Q), x | z ~ N(W z + mu, sigma^2 I_D).

    log p(x) = log N(x; mu, W W^T + sigma^2 I) exactly, and the posterior is Gaussian:
    q*(z | x) = N(M^-1 W^T (x - mu), sigma^2 M^-1) with M = W^T W + sigma^2 I.
    ``shift`` and ``inflate`` spoil the guide: its mean moves, its covariance grows.
    """

    def __init__(self, seed: int = 0, shift: float = 0.0, inflate: float = 1.0, sigma=0.5):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, Q, generator=g, dtype=torch.float64)
        self.mu = torch.randn(D, generator=g, dtype=torch.float64)
        self.sigma = sigma
        M = self.W.T @ self.W + sigma**2 * torch.eye(Q, dtype=torch.float64)
        self.Minv = torch.linalg.inv(M)
        self.shift, self.inflate = shift, inflate

    def sample(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, Q, generator=g, dtype=torch.float64)
        return (
            z @ self.W.T
            + self.mu
            + self.sigma * torch.randn(n, D, generator=g, dtype=torch.float64)
        )

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(D, dtype=torch.float64)
        return dist.MultivariateNormal(self.mu, cov).log_prob(x)

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Q), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.mu, self.sigma).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            loc = (x - self.mu) @ self.W @ self.Minv.T + self.shift
            cov = self.sigma**2 * self.Minv * self.inflate
            pyro.sample("z", dist.MultivariateNormal(loc, cov))


class Mixture:
    """A 1-D Gaussian mixture with a discrete latent c and a continuous offset u.

    c ~ Categorical(pi), u ~ N(0, 1), x | c, u ~ N(m_c + a u, s^2): marginally
    x ~ sum_c pi_c N(m_c, a^2 + s^2), so log p(x) is a finite sum. Two latent sites,
    one discrete: the guide draws c from ``guide_probs`` and u from its exact
    conditional posterior given c.
    """

    pi = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    m = torch.tensor([-3.0, 0.0, 4.0], dtype=torch.float64)
    a, s = 1.0, 0.7

    def __init__(self, exact: bool = True) -> None:
        self.exact = exact

    def sample(self, n: int, seed: int = 2) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        c = torch.multinomial(self.pi, n, replacement=True, generator=g)
        var = self.a**2 + self.s**2
        return self.m[c] + math.sqrt(var) * torch.randn(n, generator=g, dtype=torch.float64)

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        comp = dist.Normal(self.m, math.sqrt(self.a**2 + self.s**2)).log_prob(x[:, None])
        return (comp + self.pi.log()).logsumexp(-1)

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(self.pi))
            u = pyro.sample("u", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(self.m[c] + self.a * u, self.s), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        var = self.a**2 + self.s**2
        with pyro.plate("data", x.shape[0]):
            if self.exact:
                logits = dist.Normal(self.m, math.sqrt(var)).log_prob(x[:, None]) + self.pi.log()
            else:
                logits = torch.zeros(x.shape[0], 3, dtype=x.dtype)
            c = pyro.sample("c", dist.Categorical(logits=logits))
            post_var = self.s**2 / var
            loc = self.a * (x - self.m[c]) / var
            pyro.sample("u", dist.Normal(loc, math.sqrt(post_var)))


class CovariatePPCA(torch.nn.Module):
    """PPCA with a covariate and a plate of its own name: exact log p(x | c).

    z ~ N(0, I_Q), x | z, c ~ N(W z + V c + mu, sigma^2 I_D) under ``pyro.plate("cells")``,
    so log p(x | c) = log N(x; V c + mu, W W^T + sigma^2 I) and the guide is the exact
    posterior: every importance weight equals p(x | c), whatever K.

    With ``broadcasts=False`` the model flattens z with ``reshape(-1, Q)`` and passes
    W z through a BatchNorm layer (identity in eval mode: zero running mean, unit running
    variance, eps 0), as real networks do: it then fails under an extra particle plate,
    and gives wrong values in training mode.
    """

    def __init__(self, seed: int = 0, shift: float = 0.0, broadcasts: bool = True) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, Q, generator=g, dtype=torch.float64)
        self.V = torch.randn(D, 2, generator=g, dtype=torch.float64)
        self.mu = torch.randn(D, generator=g, dtype=torch.float64)
        self.sigma, self.shift, self.broadcasts = 0.5, shift, broadcasts
        self.Minv = torch.linalg.inv(self.W.T @ self.W + self.sigma**2 * torch.eye(Q).double())
        self.norm = torch.nn.BatchNorm1d(D, affine=False, eps=0.0, dtype=torch.float64)

    def sample(self, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        c = torch.randn(n, 2, generator=g, dtype=torch.float64)
        z = torch.randn(n, Q, generator=g, dtype=torch.float64)
        noise = self.sigma * torch.randn(n, D, generator=g, dtype=torch.float64)
        return z @ self.W.T + c @ self.V.T + self.mu + noise, c

    def exact_log_px(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(D, dtype=torch.float64)
        return dist.MultivariateNormal(c @ self.V.T + self.mu, cov).log_prob(x)

    def model(self, x: torch.Tensor, c: torch.Tensor) -> None:
        with pyro.plate("cells", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Q), 1.0).to_event(1))
            if self.broadcasts:
                wz = z @ self.W.T
            else:
                wz = self.norm(z.reshape(-1, Q) @ self.W.T)
            loc = wz + c @ self.V.T + self.mu
            pyro.sample("x", dist.Normal(loc, self.sigma).to_event(1), obs=x)

    def guide(self, x: torch.Tensor, c: torch.Tensor) -> None:
        with pyro.plate("cells", x.shape[0]):
            loc = (x - c @ self.V.T - self.mu) @ self.W @ self.Minv.T + self.shift
            pyro.sample("z", dist.MultivariateNormal(loc, self.sigma**2 * self.Minv))


class MaskedPPCA:
    """PPCA with missing entries: exact log p(x_obs) and exact E[x_mis | x_obs].

    The model follows pyrovae's masking convention (``model(x, mask)``, missing entries
    zero-filled, only observed ones scored); the guide is the exact posterior given the
    observed entries of each row, so every importance weight equals p(x_obs).
    """

    def __init__(self, seed: int = 0, sigma: float = 0.5) -> None:
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, Q, generator=g, dtype=torch.float64)
        self.mu = torch.randn(D, generator=g, dtype=torch.float64)
        self.sigma = sigma

    def sample(self, n: int, rate: float = 0.4, seed: int = 1):
        """Complete data, and a mask (True: observed) with at least one entry per row."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, Q, generator=g, dtype=torch.float64)
        x = z @ self.W.T + self.mu + self.sigma * torch.randn(n, D, generator=g).double()
        mask = torch.rand(n, D, generator=g) >= rate
        mask[:, 0] = True
        return x, mask

    def posterior(self, x: torch.Tensor, mask: torch.Tensor):
        """Mean and precision of p(z | x_obs), row by row."""
        m = mask.to(x.dtype)
        prec = (
            torch.eye(Q, dtype=x.dtype)
            + torch.einsum("dq,nd,dr->nqr", self.W, m, self.W) / self.sigma**2
        )
        rhs = ((x - self.mu) * m) @ self.W / self.sigma**2
        return torch.linalg.solve(prec, rhs.unsqueeze(-1)).squeeze(-1), prec

    def exact_log_px(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(D, dtype=torch.float64)
        out = []
        for xi, mi in zip(x, mask, strict=True):
            out.append(dist.MultivariateNormal(self.mu[mi], cov[mi][:, mi]).log_prob(xi[mi]))
        return torch.stack(out)

    def exact_conditional_mean(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        loc, _ = self.posterior(x, mask)
        return loc @ self.W.T + self.mu

    def model(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        from pyrovae.parts.distributions import ObservedEntries

        with pyro.plate("rows", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(Q), 1.0).to_event(1))
            px = dist.Normal(z @ self.W.T + self.mu, self.sigma).to_event(1)
            pyro.sample("x", ObservedEntries(px, mask), obs=x)

    def guide(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        loc, prec = self.posterior(x, mask)
        with pyro.plate("rows", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, precision_matrix=prec))
