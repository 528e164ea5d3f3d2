import torch

from ncaedit.structure import RADIUS, REFERENCE, RIDGE, structure_penalty, unexplained_deviation, unexplained_variance, window_mean


def photo_with_stripes(n=1, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(size).float()
    stripes = torch.sin(x / 2.0)[None, None, None, :].expand(n, 1, size, size)
    colour = torch.rand(n, 3, 1, 1, generator=g) * 0.5 + 0.25
    photo = colour * stripes + 0.1 * torch.randn(n, 3, size, size, generator=g)
    photo[..., :, size // 2 :] = photo[..., :, size // 2 :].mean()  # the right half flat
    return photo


def test_matches_a_direct_least_squares_fit():
    g = torch.Generator().manual_seed(1)
    photo = torch.rand(2, 3, 12, 12, generator=g, dtype=torch.float64) * 2 - 1
    result = 0.7 * photo.flip(1) + 0.3 * torch.randn(2, 3, 12, 12, generator=g, dtype=torch.float64)
    radius = 2
    got = unexplained_variance(photo, result, radius, RIDGE)
    mean = lambda x: window_mean(x, radius)  # noqa: E731
    mp, mr = mean(photo), mean(result)
    cov_pp = torch.stack([torch.stack([mean(photo[:, i][:, None] * photo[:, j][:, None])[:, 0] - mp[:, i] * mp[:, j] for j in range(3)], -1) for i in range(3)], -2)
    cov_pr = torch.stack([mean(photo[:, i][:, None] * result) - mp[:, i][:, None] * mr for i in range(3)], -1)  # n, c, h, w, 3
    solved = torch.linalg.solve(cov_pp[:, None] + RIDGE * torch.eye(3, dtype=torch.float64), cov_pr[..., None])[..., 0]
    want = (mean(result * result) - mr * mr - (solved * cov_pr).sum(-1)).clamp_min(0)
    assert torch.allclose(got, want, atol=1e-10)


def test_the_photos_edges_are_free_and_new_texture_is_not():
    photo = photo_with_stripes()
    itself = structure_penalty(torch.cat([photo, photo], 1), 1)
    # the photo's own structure made stronger, recoloured and shifted: explained by it, so about as cheap
    recoloured = structure_penalty(torch.cat([photo, 1.5 * photo.flip(1) + 0.2], 1), 1)
    noise = 0.1 * torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    speckled = structure_penalty(torch.cat([photo, photo + noise], 1), 1)
    # the stripes turned across: texture the photo does not have at that place
    crossed = structure_penalty(torch.cat([photo, photo.transpose(-1, -2)], 1), 1)
    assert itself < 0.03 and recoloured < itself + 0.02
    assert speckled > 3 * recoloured and crossed > 3 * recoloured


def test_texture_costs_where_the_photo_is_flat_not_where_it_has_that_texture():
    photo = photo_with_stripes()
    result = photo.clone()
    result[..., :, 16:] = photo[..., :, :16]  # the stripes copied onto the flat half
    per_cell = unexplained_variance(photo, result, RADIUS, RIDGE).mean(1)[0]
    assert per_cell[:, 20:].mean() > 20 * per_cell[:, :12].mean()


def test_translation_invariant_and_gradients_finite():
    photo = photo_with_stripes(2)
    result = (photo + 0.1 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(3))).requires_grad_()
    here = unexplained_variance(photo, result, RADIUS, RIDGE)
    moved = unexplained_variance(photo.roll((5, 3), (-2, -1)), result.roll((5, 3), (-2, -1)), RADIUS, RIDGE)
    assert torch.allclose(here[..., 8:24, 8:24], moved[..., 13:29, 11:27], atol=1e-6)
    flat = torch.zeros(1, 6, 16, 16, requires_grad=True)  # no variance anywhere: the square root's worst case
    (structure_penalty(torch.cat([photo, result], 1), 3) + structure_penalty(flat, 3)).backward()
    assert torch.isfinite(result.grad).all() and torch.isfinite(flat.grad).all()


def test_faint_residuals_cost_less_than_in_proportion():
    """The floored standard deviation: grain a tenth as strong adds far less than a tenth as much, so
    training does not pay the square root's steep price for the faintest residuals (its gradients at no
    variance at all: test_translation_invariant_and_gradients_finite)."""
    photo = photo_with_stripes()
    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    itself = structure_penalty(torch.cat([photo, photo], 1), 1)
    faint = structure_penalty(torch.cat([photo, photo + 0.005 * noise], 1), 1) - itself
    strong = structure_penalty(torch.cat([photo, photo + 0.05 * noise], 1), 1) - itself
    assert 0 < faint < 0.03 * strong  # the unfloored standard deviation adds 0.056 of it here


def test_each_crop_pays_more_at_the_margin_the_more_it_already_has():
    """A power of each crop's deviation: a batch scores as the mean of its crops, and of two crops given
    the same extra grain, the one already covered in texture pays more for it than the one that kept to
    the photo (in proportion, the square root's concave charge made it pay less)."""
    photo = photo_with_stripes(2)
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(photo.shape, generator=g)
    textured = photo.clone()
    textured[1] += 0.1 * noise[1]  # crop 1 already covered in texture, crop 0 the photo itself
    batch = torch.cat([photo, textured], 1)
    alone = [structure_penalty(batch[i : i + 1], 3) for i in range(2)]
    assert torch.allclose(structure_penalty(batch, 3), (alone[0] + alone[1]) / 2)
    grain = 0.02 * torch.randn(photo.shape, generator=g)
    more = torch.cat([photo, textured + grain], 1)
    price = [structure_penalty(more[i : i + 1], 3) - alone[i] for i in range(2)]
    assert price[1] > 2 * price[0] > 0
    d = unexplained_deviation(batch)
    assert d.shape == (2,) and torch.allclose(structure_penalty(batch, 3), (REFERENCE * (d / REFERENCE) ** 3 / 3).mean())
    linear = [structure_penalty(more[i : i + 1], 1) - structure_penalty(batch[i : i + 1], 1) for i in range(2)]
    assert linear[1] < linear[0]  # in proportion, the textured crop paid less: what the power is for
