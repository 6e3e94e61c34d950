"""``edge panel``: the status LEDs office staff read, and the tools technicians use on them.

    edge panel                    run: update the three lights every poll interval
    edge panel --terminal         the same, printed as text (no LEDs: the all-in-one demo)
    edge panel --once             one update, print what the lights show and why, exit
    edge panel --test             LED test: each light through each pattern, saying what to see
    edge panel --locate 60        make the running panel show "locate" for 60 s (0 cancels)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from edge.config import load_config
from edge.health.heartbeat import STATUS_STOPPED, runtime_dir
from edge.panel.config import LANGS, PanelConfig, parse_panel_config
from edge.panel.driver import GpioPanel, PanelOutput, TerminalPanel, run_walk, walk_plan
from edge.panel.errors import NoGpioBackend, PanelError
from edge.panel.patterns import Led
from edge.panel.runner import PanelRunner, build_runner, describe
from edge.panel.sources import write_locate

__all__ = ["register"]

MAX_LOCATE_S = 24 * 3600.0


def _locate_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= v <= MAX_LOCATE_S:
        raise argparse.ArgumentTypeError(f"{text}: use 0 (cancel) to {MAX_LOCATE_S:g} seconds")
    return v


def _hold_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < v <= 60:
        raise argparse.ArgumentTypeError(f"{text}: use more than 0 and at most 60 seconds")
    return v


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "panel", help="status LEDs for office staff",
        description="Drive the NET, DATA and SYS status lights (see docs/led-legend.md).")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true",
                      help="update the lights once, print what they show and why, exit")
    mode.add_argument("--test", action="store_true",
                      help="LED test for technicians: every light through every pattern, "
                           "saying what should be seen")
    mode.add_argument("--locate", type=_locate_seconds, metavar="SECONDS",
                      help="make the running panel show 'locate' for SECONDS (0 cancels)")
    p.add_argument("--terminal", action="store_true",
                   help="print the lights as text instead of driving GPIO (no LEDs needed)")
    p.add_argument("--lang", choices=LANGS, help="language of printed text "
                   "(default: [panel] lang)")
    p.add_argument("--led", action="append", choices=[led.value for led in Led],
                   help="with --test: only this light (repeat for more)")
    p.add_argument("--hold", type=_hold_seconds, metavar="SECONDS",
                   help="with --test: show each pattern this long (default: two cycles, "
                        "at least 3 s)")
    p.set_defaults(handler=_handle)


def _open_output(args: argparse.Namespace, pcfg: PanelConfig, lang: str) -> PanelOutput:
    if args.terminal:
        return TerminalPanel(sys.stdout, lang=lang)
    try:
        return GpioPanel(pcfg.pins, active_high=pcfg.active_high)
    except NoGpioBackend:
        raise
    except Exception as e:  # gpiozero or backend refusing a pin (busy, invalid, ...)
        pins = ", ".join(f"{led.value}=GPIO{pin}" for led, pin in pcfg.pins.items())
        raise PanelError(
            f"cannot drive the status LEDs on {pins} ({type(e).__name__}: {e}): if the panel "
            "service is running, stop it first (systemctl stop edge-panel); otherwise check "
            "[panel] net_pin, data_pin and sys_pin", key="panel.gpio_unavailable") from e


def _handle(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    pcfg = parse_panel_config(cfg)
    lang: str = args.lang or pcfg.lang

    if args.locate is not None:
        until = write_locate(runtime_dir(cfg.device.state_dir), args.locate)
        if until is None:
            print("locate cancelled")
        else:
            print(f"locate on for {args.locate:g} s: the three lights run NET, DATA, SYS in "
                  f"turn (the running panel shows it within {pcfg.poll_interval_s:g} s)")
        return 0

    if (args.led or args.hold) and not args.test:
        raise PanelError("--led and --hold go with --test", key="panel.usage")

    output = _open_output(args, pcfg, lang)
    try:
        if args.test:
            return _walk(args, pcfg, output, lang)
        runner = build_runner(cfg, output, panel=pcfg, lang=lang)
        if args.once:
            d = runner.step()
            print(describe(d, lang, lights=not args.terminal))
            return 0
        return _run(runner, pcfg)
    finally:
        output.close()


def _walk(args: argparse.Namespace, pcfg: PanelConfig, output: PanelOutput, lang: str) -> int:
    leds = [Led(v) for v in args.led] if args.led else list(Led)
    if args.hold:
        plan = walk_plan(pcfg.pins, leds=leds, cycles=0.0, min_hold_s=args.hold)
    else:
        plan = walk_plan(pcfg.pins, leds=leds)
    total = sum(step.hold_s for step in plan)
    if lang == "id":
        print(f"Uji lampu: {len(plan)} langkah, sekitar {total:.0f} detik. "
              "Bandingkan setiap lampu dengan keterangannya.")
    else:
        print(f"LED test: {len(plan)} steps, about {total:.0f} s. "
              "Check each light against its description.")

    def say(text: str) -> None:
        print(f"  {text}", flush=True)

    run_walk(output, plan, say=say, lang=lang)
    print("Selesai: semua lampu mati." if lang == "id" else "Done: all lights off.")
    return 0


def _run(runner: PanelRunner, pcfg: PanelConfig) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="edge panel: %(levelname)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        runner.run(stop, pcfg.poll_interval_s)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if runner.heartbeat is not None:
            runner.heartbeat.beat(STATUS_STOPPED)
    return 0
