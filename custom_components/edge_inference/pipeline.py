"""One camera pipeline (a subentry): snapshot polling or a stream run by the server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from homeassistant.components import camera
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_call_later, async_track_time_interval
from homeassistant.util import dt as dt_util

from .client import Detection, DetectResult, EdgeInferenceError, InvalidAuth, parse_detections
from .const import (
    CONF_CAMERA_ENTITY_ID,
    CONF_CLEAR_AFTER,
    CONF_FPS,
    CONF_INTERVAL,
    CONF_LABELS,
    CONF_MIN_SCORE,
    CONF_MODE,
    CONF_MOTION_PERCENT,
    DEFAULT_CLEAR_AFTER,
    DEFAULT_FPS,
    DEFAULT_INTERVAL,
    DEFAULT_MIN_SCORE,
    DEFAULT_MOTION_PERCENT,
    LOGGER,
    MODE_SNAPSHOT,
    MODE_STREAM,
    camera_status_topic,
    counts_topic,
    events_topic,
    server_camera_id,
)
from .mqtt import async_subscribe_json

if TYPE_CHECKING:
    from .coordinator import EdgeInferenceCoordinator
    from .models import EdgeInferenceConfigEntry

type EventListener = Callable[[dict[str, Any]], None]


def camera_ref(hass: HomeAssistant, entity_id: str) -> str:
    """What a pipeline stores: the camera's entity registry id, if it has one."""
    entry = er.async_get(hass).async_get(entity_id)
    return entry.id if entry else entity_id


def camera_entity_id(hass: HomeAssistant, ref: str) -> str:
    """An entity id from an entity registry id (or an entity id, as stored before)."""
    # A registry id whose entity is gone stays as it is: camera calls then report it.
    return er.async_resolve_entity_id(er.async_get(hass), ref) or ref


class CameraPipeline:
    """Counts, occupancy, the latest annotated image and detection events of one camera."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: EdgeInferenceConfigEntry,
        coordinator: EdgeInferenceCoordinator,
        subentry: ConfigSubentry,
    ) -> None:
        """Read the subentry; nothing runs before `async_start`."""
        self.hass = hass
        self.entry = entry
        self.coordinator = coordinator
        self.subentry_id = subentry.subentry_id
        self.camera_id = server_camera_id(self.subentry_id)
        self._configure(subentry)
        self.image: bytes | None = None
        self.image_updated: datetime | None = None
        self.last_detections: list[Detection] = []
        self.enabled = True
        self.registered = False
        self.error: str | None = None
        self._running = False
        self._busy = False
        self._listeners: list[CALLBACK_TYPE] = []
        self._event_listeners: list[EventListener] = []
        self._clear_timers: dict[str, CALLBACK_TYPE] = {}
        self._unsubs: list[CALLBACK_TYPE] = []
        self._was_online = True

    def _configure(self, subentry: ConfigSubentry) -> None:
        """Take the subentry's settings; counts and occupancy start from zero."""
        self.data = dict(subentry.data)
        self.title = subentry.title
        data = subentry.data
        # The camera's entity registry id (an entity id in subentries made before 0.2).
        self.camera_ref: str = data[CONF_CAMERA_ENTITY_ID]
        self.labels: list[str] = list(data[CONF_LABELS])
        self.min_score = float(data.get(CONF_MIN_SCORE, DEFAULT_MIN_SCORE))
        self.requested_mode: str = data.get(CONF_MODE, MODE_SNAPSHOT)
        self.mode = self.requested_mode
        self._source = ""
        self.interval = float(data.get(CONF_INTERVAL, DEFAULT_INTERVAL))
        self.fps = float(data.get(CONF_FPS, DEFAULT_FPS))
        self.motion_percent = float(data.get(CONF_MOTION_PERCENT, DEFAULT_MOTION_PERCENT))
        self.clear_after = float(data.get(CONF_CLEAR_AFTER, DEFAULT_CLEAR_AFTER))
        self.counts: dict[str, int] = dict.fromkeys(self.labels, 0)
        self.occupied: dict[str, bool] = dict.fromkeys(self.labels, False)
        # The server's word on the stream source (camera status topic), stream mode only.
        self.source_state: str | None = None
        self.source_error: str | None = None

    @property
    def camera_entity_id(self) -> str:
        """The camera's entity id now: followed by registry id, so a rename keeps working."""
        return camera_entity_id(self.hass, self.camera_ref)

    @property
    def healthy(self) -> bool:
        """Whether counts and occupancy are current: the last detection worked and the
        server's stream source delivers frames. Otherwise they are unavailable."""
        return self.error is None and self.source_state in (None, "running")

    # Listeners (entities) ------------------------------------------------------------

    @callback
    def async_add_listener(self, update: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call `update` on every change of state; returns the remover."""
        self._listeners.append(update)
        return lambda: self._listeners.remove(update)

    @callback
    def async_add_event_listener(self, listener: EventListener) -> CALLBACK_TYPE:
        """Call `listener` with each `detected` event; returns the remover."""
        self._event_listeners.append(listener)
        return lambda: self._event_listeners.remove(listener)

    @callback
    def _notify(self) -> None:
        for update in list(self._listeners):
            update()

    # Life cycle ---------------------------------------------------------------------

    async def async_start(self) -> None:
        """Pick the mode (a camera without a stream source falls back) and start."""
        if self.requested_mode == MODE_STREAM:
            source = await self._async_stream_source()
            if source is None:
                LOGGER.warning(
                    "%s has no stream source; %s uses snapshots instead",
                    self.camera_entity_id,
                    self.title,
                )
                self.mode = MODE_SNAPSHOT
            else:
                self._source = source
        self._running = True
        self._unsubs.append(self.coordinator.async_add_listener(self._on_server_update))
        if self.mode == MODE_STREAM:
            topic = events_topic(self.coordinator.server_id)
            self._unsubs.append(await async_subscribe_json(self.hass, topic, self._on_event, qos=1))
            topic = counts_topic(self.coordinator.server_id, self.camera_id)
            self._unsubs.append(
                await async_subscribe_json(self.hass, topic, self._on_counts, qos=0)
            )
            topic = camera_status_topic(self.coordinator.server_id, self.camera_id)
            self._unsubs.append(
                await async_subscribe_json(self.hass, topic, self._on_camera_status, qos=1)
            )
        else:
            self._unsubs.append(
                async_track_time_interval(
                    self.hass,
                    self._async_snapshot_tick,
                    timedelta(seconds=self.interval),
                    name=f"edge_inference snapshot {self.title}",
                    cancel_on_shutdown=True,
                )
            )
        if self.enabled:
            await self._async_resume()

    async def async_stop(self) -> None:
        """Remove every subscription, timer and server registration of this pipeline."""
        self._running = False
        while self._unsubs:
            self._unsubs.pop()()
        for cancel in self._clear_timers.values():
            cancel()
        self._clear_timers.clear()
        if self.registered:
            await self._async_unregister()

    async def async_reconfigure(self, subentry: ConfigSubentry) -> None:
        """The user changed this pipeline: restart it alone with the new settings.

        The entities stay (they hold this object); those of removed labels leave when
        notified, the caller adds entities for new labels.
        """
        await self.async_stop()
        self._configure(subentry)
        await self.async_start()
        self._notify()

    async def async_set_enabled(self, enabled: bool) -> None:
        """The switch: pause (stop the server's stream, stop polling) or resume."""
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if self._running:
            if enabled:
                await self._async_resume()
            else:
                if self.registered:
                    await self._async_unregister()
                self._reset()
        self._notify()

    async def _async_resume(self) -> None:
        if self.mode == MODE_STREAM:
            await self._async_register()
        else:
            self.entry.async_create_background_task(
                self.hass,
                self._async_snapshot_tick(),
                f"edge_inference first snapshot {self.title}",
            )

    async def _async_stream_source(self) -> str | None:
        try:
            return await camera.async_get_stream_source(self.hass, self.camera_entity_id)
        except HomeAssistantError:
            return None

    # Stream mode: the server reads the camera and publishes events and counts --------

    async def _async_register(self) -> None:
        try:
            await self.coordinator.client.async_put_camera(
                self.camera_id,
                source=self._source,
                name=self.title,
                labels=self.labels,
                min_score=self.min_score,
                fps=self.fps,
                # Only to a server that takes it (an older one refuses unknown fields).
                motion_threshold=self.motion_percent / 100
                if "motion_threshold" in self.coordinator.data.vision.get("camera_options", [])
                else None,
            )
        except InvalidAuth:
            self._auth_failed()
        except EdgeInferenceError as err:
            self._set_error(f"cannot register the stream: {err}")
        else:
            self.registered = True
            self._set_error(None)

    async def _async_unregister(self) -> None:
        try:
            await self.coordinator.client.async_delete_camera(self.camera_id)
        except EdgeInferenceError as err:
            LOGGER.warning("Could not remove camera %s from the server: %s", self.camera_id, err)
        self.registered = False

    @callback
    def _on_server_update(self) -> None:
        online = self.coordinator.online
        came_back = online and not self._was_online
        self._was_online = online
        if came_back and self.enabled and self.mode == MODE_STREAM:
            # The server keeps registrations; this re-registers one it lost.
            self.entry.async_create_background_task(
                self.hass, self._async_ensure_registered(), f"edge_inference {self.title}"
            )

    async def _async_ensure_registered(self) -> None:
        if not self.registered or not await self._async_server_has_camera():
            await self._async_register()

    async def _async_server_has_camera(self) -> bool:
        try:
            await self.coordinator.client.async_get_camera(self.camera_id)
        except EdgeInferenceError:
            return False
        return True

    @callback
    def _on_camera_status(self, payload: dict[str, Any]) -> None:
        if payload.get("camera_id") != self.camera_id:
            return
        state, error = payload.get("state"), payload.get("error")
        if not isinstance(state, str) or (state, error) == (self.source_state, self.source_error):
            return
        if state == "running" and self.source_state not in (None, "running"):
            LOGGER.info("Camera pipeline %s: the server gets frames again", self.title)
        elif state != "running":
            LOGGER.warning(
                "Camera pipeline %s: the server's source is %s: %s", self.title, state, error
            )
        self.source_state, self.source_error = state, error if isinstance(error, str) else None
        self._notify()

    @callback
    def _on_counts(self, payload: dict[str, Any]) -> None:
        counts = payload.get("counts")
        if not self.enabled or not isinstance(counts, dict):
            return
        for label in self.labels:
            value = counts.get(label, 0)
            self._set_count(label, value if isinstance(value, int) else 0)
        self._notify()

    @callback
    def _on_event(self, payload: dict[str, Any]) -> None:
        if not self.enabled or payload.get("camera") != self.camera_id:
            return
        if payload.get("label") not in self.labels:
            return
        if payload.get("type") == "new":
            detections = parse_detections([payload])
            if detections:
                extra = {k: payload.get(k) for k in ("event_id", "track_id", "start_time")}
                self._fire(detections[0], extra)
        if payload.get("type") in ("new", "update") and not self._busy:
            self.entry.async_create_background_task(
                self.hass, self._async_fetch_snapshot(), f"edge_inference snapshot {self.title}"
            )

    async def _async_fetch_snapshot(self) -> None:
        self._busy = True
        try:
            image = await self.coordinator.client.async_camera_snapshot(self.camera_id)
        except EdgeInferenceError as err:
            LOGGER.debug("No snapshot of %s: %s", self.camera_id, err)
            return
        finally:
            self._busy = False
        if image:
            self._set_image(image)
            self._notify()

    # Snapshot mode: HA reads the camera and posts each image ------------------------

    async def _async_snapshot_tick(self, _now: datetime | None = None) -> None:
        if (
            not self._running
            or not self.enabled
            or self._busy
            or (not self.coordinator.online and self.coordinator.mqtt_connected)
            or self.coordinator.auth_failed
        ):
            return
        self._busy = True
        try:
            image = await camera.async_get_image(self.hass, self.camera_entity_id, timeout=10)
            result = await self.coordinator.client.async_detect(
                image.content,
                content_type=image.content_type,
                labels=self.labels,
                min_score=self.min_score,
                annotate=True,
            )
        except InvalidAuth:
            self._auth_failed()
            return
        except (HomeAssistantError, EdgeInferenceError) as err:
            self._set_error(str(err))
            return
        finally:
            self._busy = False
        if self._running and self.enabled:
            self._set_error(None)
            self.apply_result(result)

    @callback
    def apply_result(self, result: DetectResult) -> None:
        """Derive counts, occupancy, events and the image from one detection result."""
        watched = [d for d in result.detections if d.label in self.labels]
        self.last_detections = watched
        counts = Counter(d.label for d in watched)
        for label in self.labels:
            was_occupied = self.occupied[label]
            self._set_count(label, counts[label])
            if counts[label] and not was_occupied:
                best = max((d for d in watched if d.label == label), key=lambda d: d.score)
                self._fire(best, {})
        if watched and result.annotated_jpeg:
            self._set_image(result.annotated_jpeg)
        self._notify()

    # State -------------------------------------------------------------------------

    @callback
    def _set_count(self, label: str, count: int) -> None:
        self.counts[label] = count
        if count > 0:
            if cancel := self._clear_timers.pop(label, None):
                cancel()
            self.occupied[label] = True
        elif self.occupied[label] and label not in self._clear_timers:
            self._clear_timers[label] = async_call_later(
                self.hass, self.clear_after, self._clear_callback(label)
            )

    def _clear_callback(self, label: str) -> Callable[[datetime], None]:
        @callback
        def _clear(_now: datetime) -> None:
            self._clear_timers.pop(label, None)
            if self.counts[label] == 0:
                self.occupied[label] = False
                self._notify()

        return _clear

    @callback
    def _reset(self) -> None:
        for cancel in self._clear_timers.values():
            cancel()
        self._clear_timers.clear()
        self.counts = dict.fromkeys(self.labels, 0)
        self.occupied = dict.fromkeys(self.labels, False)

    @callback
    def _set_image(self, image: bytes) -> None:
        self.image = image
        self.image_updated = dt_util.utcnow()

    @callback
    def _fire(self, detection: Detection, extra: dict[str, Any]) -> None:
        event = {**detection.as_dict(), "camera": self.camera_entity_id, **extra}
        for listener in list(self._event_listeners):
            listener(event)

    @callback
    def _set_error(self, error: str | None) -> None:
        """A failed fetch or detect makes counts and occupancy unavailable until one works."""
        if error == self.error:
            return
        if error and not self.error:
            LOGGER.warning("Camera pipeline %s: %s", self.title, error)
        elif error is None:
            LOGGER.info("Camera pipeline %s works again", self.title)
        self.error = error
        self._notify()

    @callback
    def _auth_failed(self) -> None:
        self.coordinator.async_auth_failed()

    def diagnostics(self) -> dict[str, Any]:
        """State for the diagnostics download."""
        return {
            "camera_entity_id": self.camera_entity_id,
            "server_camera_id": self.camera_id,
            "requested_mode": self.requested_mode,
            "mode": self.mode,
            "enabled": self.enabled,
            "registered": self.registered,
            "error": self.error,
            "source_state": self.source_state,
            "source_error": self.source_error,
            "counts": dict(self.counts),
            "occupied": dict(self.occupied),
            "last_detections": [d.as_dict() for d in self.last_detections],
            "image_updated": self.image_updated.isoformat() if self.image_updated else None,
        }
