"""The committed models and their cards agree: checksum, signature, metrics source."""

import re
from pathlib import Path

import pytest

from serving.export import check_saved_model, directory_sha256
from serving.signatures import SIGNATURES

MODELS = Path(__file__).resolve().parents[1] / "serving" / "models"


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_committed_model_matches_its_card_and_the_contract(name: str):
    card = (MODELS / name / "MODEL_CARD.md").read_text()
    version = re.search(r"version `(\d+)`", card).group(1)
    version_dir = MODELS / name / version
    stated = re.search(r"sha256 .*?: `([0-9a-f]{64})`", card).group(1)
    assert directory_sha256(version_dir) == stated, (
        f"{version_dir} changed since its card was written: run insar-monitor model-card"
    )
    check_saved_model(version_dir, SIGNATURES[name])
    assert "## Metrics (from `docs/models/" in card
