"""The integration's brand images, served by HA's brands API from the integration folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

import custom_components.edge_inference as integration

BRAND = Path(integration.__file__).parent / "brand"


@pytest.mark.parametrize(
    ("image", "served"),
    [
        ("icon.png", "icon.png"),
        ("logo.png", "logo.png"),
        ("icon@2x.png", "icon@2x.png"),
        ("dark_logo.png", "dark_logo.png"),
        # No dark icon: HA falls back to the icon, as the brands CDN does.
        ("dark_icon.png", "icon.png"),
    ],
)
async def test_brand_images_served(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, image: str, served: str
) -> None:
    """/api/brands/integration/edge_inference/... answers with our own files, not the CDN."""
    assert await async_setup_component(hass, "brands", {})
    client = await hass_client()
    resp = await client.get(f"/api/brands/integration/edge_inference/{image}")
    assert resp.status == 200
    assert await resp.read() == (BRAND / served).read_bytes()


def test_brand_image_sizes() -> None:
    """The sizes the brands repository asks for: square icons, logos 128-256 px high."""
    sizes = {}
    for path in BRAND.glob("*.png"):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        sizes[path.name] = (int.from_bytes(data[16:20]), int.from_bytes(data[20:24]))
    assert sizes["icon.png"] == (256, 256)
    assert sizes["icon@2x.png"] == (512, 512)
    for logo in ("logo.png", "dark_logo.png"):
        assert sizes[logo][1] == 128
        assert sizes[logo][0] > sizes[logo][1]
    for logo in ("logo@2x.png", "dark_logo@2x.png"):
        assert sizes[logo][1] == 256
