"""Prompt mode below the command line: prompt parsing, views, CLIP loading and input normalisation,
the loss's terms, and training against a real (tiny, random-weight) open_clip model."""

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ncaedit.aesthetic import aesthetic_head_file, load_aesthetic_head
from ncaedit.apply import apply_rule
from ncaedit.clip_model import ClipSpec, GuidanceModel, load_clip
from ncaedit.errors import NcaError
from ncaedit.image import Photo
from ncaedit.lossnet import RandomFilters
from ncaedit.prompt_loss import PromptLoss, PromptLossConfig
from ncaedit.prompt_text import WeightedPrompt, parse_prompts
from ncaedit.recipe import load_recipe, preset_names
from ncaedit.rule import RuleConfig
from ncaedit.state import make_state
from ncaedit.train import TrainConfig, train_rule
from ncaedit.views import ViewConfig, sample_views

from helpers import random_clip, smooth_photo

logging.getLogger().setLevel(logging.ERROR)  # open_clip logs a warning for every model built without weights


class ColourGuidance(GuidanceModel):
    """A stand-in CLIP: images embed as their mean colour minus grey; "red", "green", "blue" as axes."""

    name, input_size, embed_dim = "colour", 8, 3
    AXES = {"red": 0, "green": 1, "blue": 2}

    def encode_image(self, rgb):
        return rgb.mean((2, 3)) - 0.5

    def encode_text(self, texts):
        out = torch.zeros(len(texts), 3)
        for i, t in enumerate(texts):
            for word, axis in self.AXES.items():
                if word in t:
                    out[i, axis] = 1
        return out


def test_parse_prompts():
    assert parse_prompts("a pencil sketch") == [WeightedPrompt("a pencil sketch", 1.0)]
    assert parse_prompts("a pencil sketch:1 | charcoal:0.5 | blurry:-0.3") == [
        WeightedPrompt("a pencil sketch", 1.0), WeightedPrompt("charcoal", 0.5), WeightedPrompt("blurry", -0.3),
    ]
    assert parse_prompts("style: ukiyo-e") == [WeightedPrompt("style: ukiyo-e", 1.0)]  # a colon that is text
    for bad, pattern in [("", "empty prompt"), ("a | ", "empty prompt"), ("a:0", "non-zero"), ("a:-1", "positive weight"), (":2", "empty")]:
        with pytest.raises(NcaError, match=pattern):
            parse_prompts(bad)


def test_plain_views_are_the_image_and_both_images_share_the_views():
    img = torch.rand(2, 3, 16, 16)
    plain = ViewConfig(cutouts=3, cut_min=1.0, perspective=0.0, flip=False, jitter=0.0)
    v = sample_views(2, 16, 16, 16, plain, torch.Generator().manual_seed(0))
    assert torch.allclose(v(img), img.repeat_interleave(3, 0), atol=1e-5)

    cfg = ViewConfig(cutouts=5, cut_min=0.3, perspective=0.3, flip=True, jitter=0.2)
    v = sample_views(2, 16, 24, 32, cfg, torch.Generator().manual_seed(1))
    out = v(torch.rand(2, 3, 16, 24))
    assert out.shape == (10, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    grey = torch.full((2, 3, 16, 24), 0.5)
    assert torch.allclose(v(grey), v(grey.clone()))  # a fixed draw: same views for the result and its source
    assert not torch.allclose(out, sample_views(2, 16, 24, 32, cfg, torch.Generator().manual_seed(2))(torch.rand(2, 3, 16, 24)))


def test_clip_sees_pixels_normalised_as_open_clip_preprocesses_them(tmp_path):
    import open_clip
    from PIL import Image

    config, weights = random_clip(tmp_path)
    clip = load_clip(ClipSpec(str(config), weights=weights))
    assert clip.input_size == 32 and clip.embed_dim == 32
    rgb = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    preprocess = open_clip.image_transform(32, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)
    with torch.no_grad():
        reference = clip.model.encode_image(preprocess(Image.fromarray(rgb))[None])
        ours = clip.encode_image(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
    assert torch.allclose(ours, reference, atol=1e-5)


def test_loading_errors(tmp_path):
    config, weights = random_clip(tmp_path)
    other = tmp_path / "other.json"
    other.write_text(config.read_text().replace('"embed_dim": 32', '"embed_dim": 16'))
    cases = [
        (ClipSpec("ViT-Nope"), "unknown architecture"),
        (ClipSpec(str(tmp_path / "none.json")), "no such config"),
        (ClipSpec(str(config), weights=tmp_path / "none.safetensors"), "no such file"),
        (ClipSpec(str(other), weights=weights), "could not load"),  # weights of another architecture
        (ClipSpec("ViT-B-32", pretrained="nope"), "known tags: openai"),
        (ClipSpec(str(config), pretrained="openai", weights=weights), "not a known tag"),
        (ClipSpec(str(config)), "has no default weights"),
        (ClipSpec("hf-hub:org/repo", weights=weights), "brings its own weights"),
        (ClipSpec("ViT-B-32"), "not cached and offline mode is on"),
    ]
    for spec, pattern in cases:
        with pytest.raises(NcaError, match=pattern):
            load_clip(spec)


def state_of(rgb: np.ndarray, hidden: int = 2) -> torch.Tensor:
    return make_state(torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), hidden)


def redness_gradient(prompt: str, config: PromptLossConfig, **kw) -> float:
    """How the loss wants the working red channel to move (> 0: redder)."""
    state = state_of(smooth_photo(24, 24)).requires_grad_(True)
    loss = PromptLoss(ColourGuidance(), parse_prompts(prompt), config, **kw)
    loss(state, torch.Generator().manual_seed(0))["total"].backward()
    return -float(state.grad[:, 3].sum())


def test_prompt_weights_pull_toward_and_push_away():
    only_prompt = PromptLossConfig(direction_weight=0, patch_weight=0, content_weight=0, tv_weight=0, templates=False)
    assert redness_gradient("red", only_prompt) > 0
    assert redness_gradient("blue | red:-1", only_prompt) < 0
    direction_only = PromptLossConfig(prompt_weight=0, patch_weight=0, content_weight=0, tv_weight=0, templates=False)
    assert redness_gradient("red", direction_only) > 0
    assert redness_gradient("green", direction_only, source_prompt="red") < 0  # from red to green: less red


def test_patch_term_ignores_views_within_the_threshold():
    state = state_of(smooth_photo(24, 24))
    state[:, 3] += 0.2  # the result is redder than its source in every view
    cfg = dict(prompt_weight=0, direction_weight=0, content_weight=0, tv_weight=0, templates=False)
    loss = lambda threshold: PromptLoss(ColourGuidance(), parse_prompts("red"), PromptLossConfig(patch_threshold=threshold, **cfg))
    strict, lenient = (loss(t)(state, torch.Generator().manual_seed(0))["patch"] for t in (0.0, 1.5))
    assert strict > 0 and lenient == 0


def test_aesthetic_head_and_term(tmp_path):
    torch.save({"weight": torch.tensor([[10.0, 0.0, 0.0]]), "bias": torch.tensor([5.0])}, tmp_path / "head.pth")
    head = load_aesthetic_head(aesthetic_head_file("colour", tmp_path / "head.pth"), 3)
    assert float(head(torch.tensor([[0.5, 0.0, 0.0]]))) == pytest.approx(10.0)
    with pytest.raises(NcaError, match="weight 1x4"):
        load_aesthetic_head(tmp_path / "head.pth", 4)
    for name, pattern in [("ViT-B-32", "sa_0_4_vit_b_32_linear.pth is not cached and offline"), ("tiny", "no published aesthetic head")]:
        with pytest.raises(NcaError, match=pattern):
            aesthetic_head_file(name)
    only = PromptLossConfig(prompt_weight=0, direction_weight=0, patch_weight=0, content_weight=0, tv_weight=0)
    assert redness_gradient("red", only, aesthetic_head=head, aesthetic_target=10.0) > 0  # this head scores red highly
    assert redness_gradient("red", only, aesthetic_head=head, aesthetic_target=0.0) < 0


def test_prompt_presets():
    assert {"fast", "balanced", "quality"} <= set(preset_names("prompt"))
    fast = load_recipe("fast", mode="prompt")
    assert isinstance(fast.loss, PromptLossConfig) and fast.loss.cutouts * fast.train.batch <= 4  # CPU budget
    assert load_recipe("fast", {"loss": {"cutouts": 3}}, mode="prompt").loss.cutouts == 3
    with pytest.raises(NcaError, match="unknown preset"):
        load_recipe("prompt-fast")  # a prompt preset is not a style preset
    with pytest.raises(NcaError, match="unknown key loss.cutouts"):
        load_recipe("fast", {"loss": {"cutouts": 3}})


def test_style_preset_file_given_to_prompt_mode(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text("[train]\niterations = 3\n")
    with pytest.raises(NcaError, match='add mode = "prompt"'):
        load_recipe(str(p), mode="prompt")
    p.write_text('mode = "prompt"\n[loss]\ncutouts = 0\n')
    with pytest.raises(NcaError, match="cutouts"):
        load_recipe(str(p), mode="prompt")


@torch.no_grad()
def similarity(clip, loss: PromptLoss, rgb: np.ndarray) -> float:
    """CLIP similarity of the whole image to the prompt, no augmentation."""
    x = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None], size=clip.input_size, mode="bilinear", antialias=True)
    return float(loss.embed(x)[0] @ loss.positive)


def test_training_against_a_real_open_clip_model_raises_similarity(tmp_path):
    config, weights = random_clip(tmp_path, seed=1)
    clip = load_clip(ClipSpec(str(config), weights=weights))
    photo = smooth_photo(48, 64)
    cfg = PromptLossConfig(cutouts=2, content_weight=0.3)
    loss = PromptLoss(clip, parse_prompts("a pencil sketch | charcoal:0.5"), cfg, loss_net=RandomFilters(levels=2, maps=8))
    train = TrainConfig(iterations=16, batch=2, crop=32, train_size=64, pool=4, steps_min=6, steps_max=10, lr=4e-3, grad_checkpoint_every=0)
    result = train_rule([photo], loss, RuleConfig(hidden_channels=4, width=16), train)
    assert len(result.history) == 16
    out = apply_rule(result.rule, Photo(photo), steps=10).rgb
    before, after = similarity(clip, loss, photo), similarity(clip, loss, out)
    print(f"similarity {before:.3f} -> {after:.3f}")
    assert after > before + 0.01
    early, late = np.mean([h["similarity"] for h in result.history[:5]]), np.mean([h["similarity"] for h in result.history[-5:]])
    assert late > early
