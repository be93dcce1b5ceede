"""Pre-encoding with the real model core: the cached latents are the pipeline's own
EncodedReferences for the service's model version, and a session can load them."""

from __future__ import annotations

import pytest

from services.api import identity_pb2

pytestmark = pytest.mark.services


@pytest.fixture(scope="session")
def vae_encoder():
    pytest.importorskip("model_core.pipeline")
    from services.identity.worker import PipelineReferenceEncoder

    return PipelineReferenceEncoder("tiny", None)


@pytest.mark.parametrize("backend", ["sqlite+local"], indirect=True)
def test_real_vae_pre_encoding(start_identity, backend, helpers, vae_encoder):
    from model_core.pipeline import EncodedReferences
    from services.identity.client import IdentityClient

    app = start_identity(encoder=vae_encoder)
    with IdentityClient(app.target, backend.new_key("acme")) as c:
        images = [
            ("global", "", helpers.image_bytes(160, 128)),
            ("body", "front", helpers.image_bytes(seed=1)),
            ("face", "smile", helpers.image_bytes(64, 64, "JPEG", seed=2)),
            ("face", "wink", helpers.image_bytes(80, 64, "WEBP", seed=3)),  # custom label
        ]
        ident = c.create("Lumi", images)
        got = helpers.wait_encoded(c, ident.id, timeout=120)
        assert got.encoding.state == identity_pb2.ENCODING_STATE_READY, got.encoding.error
        assert got.encoding.model_version == "tiny-random-seed0"
        enc = EncodedReferences.from_bytes(c.fetch_encoded(ident.id))
    assert enc.model_version == got.encoding.model_version
    assert tuple(enc.global_latent.shape) == (1, 16, 1, 16, 16)
    assert set(enc.body) == {"front"} and set(enc.face) == {"smile", "wink"}
