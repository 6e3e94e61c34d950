"""``edge intake``: wires config, spool, sealing keys and tokens to the HTTP app and the hot
folder, runs startup recovery, then serves (HTTPS when a certificate is configured)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from anyio import to_thread
from starlette.applications import Starlette

from edge.config import Config
from edge.health import INTAKE
from edge.health.heartbeat import Heartbeat, heartbeat_dir, runtime_dir
from edge.health.sdnotify import Notifier
from edge.intake.app import IntakeContext, create_app
from edge.intake.hotfolder import HotFolder
from edge.intake.ingest import Ingestor
from edge.intake.staffpage import staff_routes
from edge.intake.tokens import TokenStore
from edge.panel.sources import spool_summary_detail
from edge.seal import load_device_signing_key, load_sealing_public_keys
from edge.spool import Spool

__all__ = ["build_intake", "open_spool", "run_intake"]

log = logging.getLogger("edge.intake")


def open_spool(cfg: Config) -> Spool:
    return Spool(cfg.spool.dir, quota_bytes=cfg.spool.quota_bytes,
                 reserve_bytes=cfg.spool.reserve_bytes, segment_size=cfg.seal.segment_size)


def build_intake(cfg: Config, spool: Spool) -> tuple[Starlette, IntakeContext, HotFolder | None]:
    public = load_sealing_public_keys(cfg.seal.central_public_key).for_kem(cfg.seal.kem)
    ingestor = Ingestor(spool=spool, device_id=cfg.device.id, public_key=public,
                        kem=cfg.seal.kem, segment_size=cfg.seal.segment_size,
                        signing_key=load_device_signing_key(cfg.identity.key))
    ctx = IntakeContext(ingestor=ingestor, spool=spool, tokens=TokenStore(cfg.intake.tokens_file),
                        device_id=cfg.device.id,
                        max_recording_bytes=cfg.intake.max_recording_bytes,
                        body_idle_timeout_s=cfg.intake.body_idle_timeout_s,
                        extra_routes=staff_routes(spool, runtime_dir(cfg.device.state_dir),
                                                  cfg.device.id))
    hot = None
    if cfg.intake.hot_folder is not None:
        hot = HotFolder(cfg.intake.hot_folder, ingestor, cfg.intake.hot_folder_workstation,
                        cfg.intake.hot_folder_settle_s)
    return create_app(ctx), ctx, hot


def uvicorn_config(cfg: Config, app: Any, **over: Any) -> uvicorn.Config:
    kw: dict[str, Any] = dict(host=cfg.intake.host, port=cfg.intake.port, log_level="warning",
                              access_log=False, timeout_keep_alive=10, server_header=False,
                              lifespan="off")
    if cfg.intake.tls_cert is not None and cfg.intake.tls_key is not None:
        kw.update(ssl_certfile=str(cfg.intake.tls_cert), ssl_keyfile=str(cfg.intake.tls_key))
    kw.update(over)
    return uvicorn.Config(app, **kw)


async def _alive_loop(cfg: Config, spool: Spool, server: uvicorn.Server,
                      hot: HotFolder | None, notifier: Notifier) -> None:
    """On the event loop itself, so a stuck loop stops the pings: tell systemd we are ready
    once listening, then ping the watchdog and beat the heartbeat (with the spool summary
    the panel shows, so the panel never opens the spool itself)."""
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.05)
    scheme = "https" if cfg.intake.tls_cert else "http"
    notifier.ready(status=f"listening on {scheme}://{cfg.intake.host}:{cfg.intake.port}")
    hb = Heartbeat(heartbeat_dir(cfg.device.state_dir), INTAKE)
    while not server.should_exit:
        try:
            summary = await to_thread.run_sync(spool.summary)
            hot_ok = hot is None or hot.last_scan_age_s() < 60.0
            hb.beat("ok" if hot_ok else "error",
                    {"spool": spool_summary_detail(summary),
                     **({} if hot_ok else {"error": "hot folder scan stuck"})})
            if hot_ok:  # a stuck hot folder must trip the watchdog too
                notifier.ping()
            notifier.status(f"{summary.waiting_count} waiting, "
                            f"{summary.free_bytes // 2**20} MiB free")
        except Exception:  # a heartbeat failure must never stop intake
            log.exception("intake heartbeat failed")
        await asyncio.sleep(1.0)


def run_intake(cfg: Config) -> int:
    spool = open_spool(cfg)
    spool.acquire_role("intake")
    report = spool.recover_intake()
    log.info("spool recovery: %d temp removed, %d quarantined, %d lost, %d purge leftovers",
             len(report.temp_removed), len(report.quarantined), len(report.lost),
             len(report.purged_leftovers))
    for name in report.quarantined:
        log.warning("quarantined %s (file without index row)", name)
    for rid in report.lost:
        log.error("recording %s is LOST (row without file): ask the workstation to re-upload",
                  rid)
    app, _ctx, hot = build_intake(cfg, spool)
    if hot is not None:
        hot.start()
    server = uvicorn.Server(uvicorn_config(cfg, app))
    notifier = Notifier()
    scheme = "https" if cfg.intake.tls_cert else "http"
    log.info("intake listening on %s://%s:%d", scheme, cfg.intake.host, cfg.intake.port)

    async def main() -> None:
        alive = asyncio.create_task(_alive_loop(cfg, spool, server, hot, notifier))
        try:
            await server.serve()
        finally:
            server.should_exit = True
            await alive

    try:
        asyncio.run(main())
    finally:
        notifier.stopping()
        Heartbeat(heartbeat_dir(cfg.device.state_dir), INTAKE).beat("stopped")
        if hot is not None:
            hot.stop()
        spool.close()
    return 0
