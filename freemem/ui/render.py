"""The inspector's HTML, rendered on the server from :mod:`freemem.ui.source` data.

Everything a thread holds is untrusted (tool output, model text, ids): every piece of it goes through
:func:`esc` (``html.escape`` with quotes) on its way into the page, and the page's Content-Security-Policy
(:mod:`freemem.ui.app`) allows no inline script, so a payload that slipped through still could not run. The
chart is inline SVG built here; the only script is ``static/ui.js`` (tabs, restore confirmation).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from freemem.ui.source import MARKER_RE, Call, EventRow, FieldText, MessageText, ThreadPage, ThreadSummary

__all__ = ["MAX_MARKS", "error_page", "event_page", "esc", "recall_page", "thread_page", "threads_page"]

#: The most per-call dots and event marks the chart draws (a long thread's page stays small).
MAX_MARKS = 300


def esc(value: Any) -> str:
    """Text (or anything, via ``str``) escaped for HTML text and quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def _url(path: str, **query: Any) -> str:
    q = {k: v for k, v in query.items() if v is not None}
    return esc(path + ("?" + urlencode(q) if q else ""))


def _when(ts: Any) -> str:
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(ts, str) and "T" in ts:
        return ts.replace("T", " ")[:19]
    return str(ts or "")


def _n(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return esc(value)


def _layout(title: str, body: str, *, where: str, csrf: str | None = None, crumbs: str = "") -> str:
    meta = f'<meta name="freemem-csrf" content="{esc(csrf)}">' if csrf else ""
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{meta}"
        f"<title>{esc(title)} · freemem</title>"
        "<link rel=\"stylesheet\" href=\"/static/ui.css\"><script src=\"/static/ui.js\" defer></script>"
        "</head><body>"
        f"<header><a class=\"brand\" href=\"/\">freemem</a> <span class=\"crumbs\">{crumbs}</span>"
        f"<span class=\"where\">{esc(where)}</span></header>"
        f"<main>{body}</main></body></html>"
    )


def error_page(status: int, message: str, *, where: str) -> str:
    body = f'<h1>{status}</h1><p class="error" id="error">{esc(message)}</p><p><a href="/">all threads</a></p>'
    return _layout(f"{status}", body, where=where)


# ------------------------------------------------------------------------------------------------ threads


def threads_page(threads: Sequence[ThreadSummary], *, where: str, hint: str = "") -> str:
    if not threads:
        body = (f'<h1>Threads</h1><p class="empty" id="no-threads">No threads in {esc(where)}. Run an agent with '
                "this checkpointer first (see the README)"
                + (f", or look elsewhere: {esc(hint)}" if hint else "") + ".</p>")
        return _layout("threads", body, where=where)
    rows = "".join(
        f'<tr><td><a class="thread-link" href="{_url("/thread", id=t.thread_id)}">{esc(t.thread_id)}</a></td>'
        f"<td>{esc(_when(t.updated))}</td><td class=\"num\">{t.n_messages:,}</td>"
        f"<td class=\"num\">{t.tokens:,}</td><td class=\"num\">{t.n_events:,}</td></tr>"
        for t in threads)
    body = ("<h1>Threads</h1>"
            '<table id="threads"><thead><tr><th>thread</th><th>updated (UTC)</th><th>messages</th>'
            f"<th>tokens now</th><th>cleaning events in state</th></tr></thead><tbody>{rows}</tbody></table>")
    return _layout("threads", body, where=where)


# ------------------------------------------------------------------------------------------------ chart


def sawtooth_svg(calls: Sequence[Call], events: Sequence[EventRow], thread_id: str) -> str:
    """Tokens of messages sent per model call (with freemem) against the whole history (without)."""
    if not calls:
        return '<p class="empty" id="no-calls">No model calls in this thread\'s checkpoints.</p>'
    w, h, left, right, top, bottom = 960, 300, 64, 16, 16, 36
    peak_sent = max(max(c.tokens_sent for c in calls), 1)
    peak_without = max(c.tokens_without for c in calls)
    # The sawtooth is what the chart is for: when the whole history dwarfs it, the dashed line leaves the top
    # (clipped, and the legend says how high it goes) rather than flatten the sawtooth to the axis.
    clipped = peak_without > 3 * peak_sent
    top_value = peak_sent * 1.6 if clipped else max(peak_without, peak_sent)
    n = len(calls)

    def x(i: int) -> float:
        return left + (w - left - right) * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - v / top_value)

    sent = " ".join(f"{x(i):.1f},{y(c.tokens_sent):.1f}" for i, c in enumerate(calls))
    without = " ".join(f"{x(i):.1f},{y(c.tokens_without):.1f}" for i, c in enumerate(calls))
    ticks = []
    for k in range(5):
        v = top_value * k / 4
        ticks.append(f'<line class="grid" x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                     f'<text class="tick" x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{int(v):,}</text>')
    step = max(1, n // 10)
    for i in range(0, n, step):
        ticks.append(f'<text class="tick" x="{x(i):.1f}" y="{h - bottom + 16}" text-anchor="middle">'
                     f"{calls[i].index}</text>")
    dots = []
    by_id = {e.id: e for e in events}
    # A long thread's chart stays small: past MAX_MARKS calls, no dot per call, and at most MAX_MARKS event
    # marks, evenly spread (the lines keep every call).
    marked = [(i, eid) for i, c in enumerate(calls) for eid in c.events]
    keep = {marked[round(k * len(marked) / MAX_MARKS)] for k in range(MAX_MARKS)} if len(marked) > MAX_MARKS \
        else set(marked)
    for i, c in enumerate(calls):
        if n <= MAX_MARKS:
            dots.append(f'<circle class="call" cx="{x(i):.1f}" cy="{y(c.tokens_sent):.1f}" r="2.5">'
                        f"<title>call {c.index}: {c.tokens_sent:,} tokens sent ({c.tokens_without:,} without "
                        "freemem)</title></circle>")
        for eid in c.events:
            if (i, eid) not in keep:
                continue
            ev = by_id.get(eid)
            before = ev.data.get("tokens_before") if ev else None
            if isinstance(before, (int, float)) and before > c.tokens_sent:  # the tooth: what the clean cut
                dots.append(f'<line class="drop" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{y(min(before, top_value)):.1f}" '
                            f'y2="{y(c.tokens_sent):.1f}"/>')
            label = (f"event {eid}: {ev.data.get('trigger', '')}, {_n(ev.data.get('tokens_before'))} → "
                     f"{_n(ev.data.get('tokens_after'))} tokens") if ev else f"event {eid}"
            dots.append(f'<a href="{_url("/event", thread=thread_id, id=eid)}">'
                        f'<circle class="clean" cx="{x(i):.1f}" cy="{y(c.tokens_sent):.1f}" r="6">'
                        f"<title>{esc(label)}</title></circle></a>")
    return (
        f'<svg id="sawtooth" class="chart" viewBox="0 0 {w} {h}" role="img" '
        'aria-label="tokens sent to the model per call">'
        + "".join(ticks)
        + f'<clipPath id="plot"><rect x="{left}" y="{top}" width="{w - left - right}" height="{h - top - bottom}"/>'
        f'</clipPath><polyline class="without" clip-path="url(#plot)" points="{without}"/>'
        f'<polyline class="sent" points="{sent}"/>'
        + "".join(dots)
        + f'<text class="axis" x="{(w + left) / 2:.0f}" y="{h - 4}" text-anchor="middle">model call</text>'
        "</svg>"
        '<p class="legend"><span class="k sent"></span> tokens of messages sent, with freemem '
        '<span class="k without"></span> the whole history, without'
        + (f" (off the chart: it reaches {peak_without:,})" if clipped else "")
        + ' <span class="k clean"></span> a cleaning event (click it)'
        + (f"; {len(marked) - len(keep):,} more events not marked" if len(marked) > len(keep) else "")
        + "</p>"
    )


# ------------------------------------------------------------------------------------------------ messages


def _marked(text: str, freed: Sequence[tuple[int, int, str]], *, focus: str | None, thread_id: str) -> str:
    """``text`` escaped, each removed interval wrapped in ``<del>`` (``focus``: the event to emphasise)."""
    tags: list[tuple[int, int, int, str]] = []
    for start, end, eid in freed:
        if not 0 <= start <= end <= len(text):
            continue
        cls = "freed focus" if focus is None or eid == focus else "freed other"
        tags.append((start, 1, -end, f'<del class="{cls}" data-event="{esc(eid)}" '
                                     f'title="removed by event {esc(eid)}">'))
        tags.append((end, 0, 0, "</del>"))
    tags.sort(key=lambda t: (t[0], t[1], t[2]))
    out, at = [], 0
    for pos, _kind, _order, tag in tags:
        out.append(esc(text[at:pos]))
        out.append(tag)
        at = pos
    out.append(esc(text[at:]))
    return "".join(out)


def _with_markers(text: str, thread_id: str) -> str:
    """``text`` escaped, freemem's default markers linked to what they freed."""
    out, at = [], 0
    for m in MARKER_RE.finditer(text):
        out.append(esc(text[at:m.start()]))
        out.append(f'<a class="marker" href="{_url("/recall", thread=thread_id, ref=m.group(1))}">'
                   f"{esc(m.group(0))}</a>")
        at = m.end()
    out.append(esc(text[at:]))
    return "".join(out)


def _field_html(f: FieldText, *, thread_id: str, pruned: bool, focus: str | None) -> str:
    body = _with_markers(f.text, thread_id) if pruned else _marked(f.text, f.freed, focus=focus,
                                                                   thread_id=thread_id)
    label = "" if f.name == "content" else f'<div class="field-name">{esc(f.name)}</div>'
    return f'{label}<pre class="text">{body}</pre>'


def message_html(m: MessageText, *, thread_id: str, pruned: bool, focus: str | None = None) -> str:
    classes = ["msg", f"role-{esc(m.role)}"]
    note = ""
    if m.fold is not None:
        classes.append("fold")
        note = (f'<div class="note">fold message: it stands for folded messages, archived whole '
                f'(<a href="{_url("/recall", thread=thread_id, ref=m.fold)}">recall {esc(m.fold)}</a>)</div>')
    if m.folded_by is not None and not pruned:
        eid, handle = m.folded_by
        classes.append("folded")
        if focus is None or focus == eid:
            classes.append("focus")
        note = (f'<div class="note">folded away by event <a href="{_url("/event", thread=thread_id, id=eid)}">'
                f"{esc(eid)}</a> into fold {esc(handle)}: the model no longer sees this message</div>")
    if any(f.freed for f in m.fields) and not pruned:
        classes.append("has-freed")
    head = f'<span class="role">{esc(m.role)}</span>'
    if m.name:
        head += f' <span class="name">{esc(m.name)}</span>'
    if m.id:
        head += f' <span class="id">#{esc(m.id)}</span>'
    if m.tool_call_id:
        head += f' <span class="id">result of {esc(m.tool_call_id)}</span>'
    calls = "".join(f'<div class="call">→ {esc(name)}(<code>{esc(args)}</code>) <span class="id">{esc(cid)}</span>'
                    "</div>" for cid, name, args in m.tool_calls)
    fields = "".join(_field_html(f, thread_id=thread_id, pruned=pruned, focus=focus)
                     for f in m.fields if f.text and not f.name.startswith("tool_calls["))
    args = [f for f in m.fields if f.name.startswith("tool_calls[") and (f.freed and not pruned)]
    fields += "".join(_field_html(f, thread_id=thread_id, pruned=pruned, focus=focus) for f in args)
    return (f'<article class="{" ".join(classes)}" data-id="{esc(m.id or "")}">'
            f'<div class="head">{head}</div>{note}{fields}{calls}</article>')


# ------------------------------------------------------------------------------------------------ thread


def _cache_cost(data: Mapping[str, Any]) -> str:
    cache = data.get("cache")
    if not isinstance(cache, Mapping) or not cache:
        return '<span class="muted">—</span>'
    cost = cache.get("cost")
    decision = cache.get("decision")
    text = f"{_n(cost)}" if cost is not None else ""
    if decision:
        text += f' <span class="muted">({esc(decision)})</span>'
    return text or esc(json.dumps(dict(cache), default=str))


def _restore_form(thread_id: str, csrf: str, event_id: str | None, label: str) -> str:
    hidden = f'<input type="hidden" name="event" value="{esc(event_id)}">' if event_id else ""
    return (f'<form class="restore" method="post" action="/restore">'
            f'<input type="hidden" name="thread" value="{esc(thread_id)}">{hidden}'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
            f'<button type="submit" class="restore-button">{esc(label)}</button></form>')


def events_table(events: Sequence[EventRow], thread_id: str, *, csrf: str | None, has_archive: bool = True) -> str:
    if not events:
        return '<p class="empty" id="no-events">No cleaning events yet: nothing was freed in this thread.</p>'
    rows = []
    for ev in events:
        d = ev.data
        n_spans = d.get("n_spans", d.get("applied", 0))
        folds = d.get("folds") or []
        n_folded = sum(int(f.get("n_messages", 0) or 0) for f in folds if isinstance(f, Mapping))
        where = "archive" if ev.in_archive else "state only"
        if ev.restored:
            status = f"restored {esc(_when(d.get('restored_at')))}"
        elif ev.in_archive:
            status = "kept"
        elif has_archive:
            status = '<span class="muted">not archived (nothing removed)</span>' if not d.get("applied") and not folds \
                else '<span class="muted">not in the archive (expired?)</span>'
        else:
            status = '<span class="muted">no archive</span>'

        action = _restore_form(thread_id, csrf, ev.id, "restore") if (csrf and ev.restorable) else ""
        rows.append(
            f'<tr class="event-row" data-event="{esc(ev.id)}">'
            f'<td><a class="event-link" href="{_url("/event", thread=thread_id, id=ev.id)}">{esc(ev.id)}</a></td>'
            f"<td>{esc(_when(d.get('created_at')))}</td><td>{esc(d.get('trigger'))}</td>"
            f"<td>{esc(d.get('cleaner'))}</td>"
            f'<td class="num">{_n(d.get("tokens_before"))} → {_n(d.get("tokens_after"))}</td>'
            f'<td class="num">{_n(d.get("tokens_freed", 0))}</td><td class="num">{_n(n_spans)}</td>'
            f'<td class="num">{_n(n_folded) if folds else "—"}</td><td class="num">{_cache_cost(d)}</td>'
            f"<td>{esc(where)}</td><td>{status}{action}</td></tr>")
    return ('<table id="events"><thead><tr><th>event</th><th>time (UTC)</th><th>trigger</th><th>cleaner</th>'
            "<th>tokens before → after</th><th>freed</th><th>spans</th><th>folded msgs</th><th>cache cost</th>"
            f"<th>found in</th><th>status</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _pager(page: ThreadPage, which: str, anchor: str, context: str | None = None) -> str:
    """First / previous / "page X of Y" / next / last links for the events (``epage``) or messages (``mpage``);
    ``context`` (the ``context=`` asked for: ``original`` / ``pruned``) is kept."""
    current, pages = ((page.events_page, page.events_pages) if which == "epage"
                      else (page.messages_page, page.messages_pages))
    if pages <= 1:
        return ""
    other: dict[str, Any] = ({"mpage": page.messages_page} if which == "epage" else {"epage": page.events_page})
    other["context"] = context

    def link(n: int, label: str, rel: str) -> str:
        if n == current or not 1 <= n <= pages:
            return f'<span class="page-link disabled">{esc(label)}</span>'
        href = _url("/thread", id=page.thread_id, **{which: n}, **other) + "#" + anchor
        return f'<a class="page-link" rel="{rel}" data-page="{n}" href="{href}">{esc(label)}</a>'

    return (f'<nav class="pager" id="{which}-pager" data-page="{current}" data-pages="{pages}">'
            + link(1, "« first", "first") + link(current - 1, "‹ previous", "prev")
            + f'<span class="page-of">page {current:,} of {pages:,}</span>'
            + link(current + 1, "next ›", "next") + link(pages, "last »", "last") + "</nav>")


def _skipped_note(page: ThreadPage) -> str:
    if not page.skipped:
        return ""
    items = "".join(f'<li data-event="{esc(sk.event_id)}" data-kind="{esc(sk.kind)}">'
                    f'<a href="{_url("/event", thread=page.thread_id, id=sk.event_id)}">{esc(sk.event_id)}</a>: '
                    f"{esc(sk.reason)}</li>" for sk in page.skipped[:20])
    more = f"<li>… and {len(page.skipped) - 20:,} more</li>" if len(page.skipped) > 20 else ""
    return (f'<div class="warn" id="skipped"><p>{len(page.skipped):,} unrestored event(s) are not part of this '
            "checkpoint's branch or do not match its messages: the original below leaves them out, and restore "
            f"skips them.</p><ul>{items}{more}</ul></div>")


def _chart_stats(page: ThreadPage) -> str:
    sent = sum(c.tokens_sent for c in page.calls)
    without = sum(c.tokens_without for c in page.calls)
    return (f"{len(page.calls):,} model calls, {sent:,} tokens of messages sent"
            + (f" ({without:,} without freemem: {1 - sent / without:.0%} saved)" if without else ""))


def chart_section(page: ThreadPage, *, stats: bool = False) -> str:
    """The chart of tokens sent per model call (``stats``: with the totals above it, as on its own page)."""
    return ('<section id="chart-section"><h2>Tokens sent per model call</h2>'
            + (f'<p class="muted" id="chart-stats">{esc(_chart_stats(page))}</p>' if stats else "")
            + sawtooth_svg(page.calls, page.events, page.thread_id)
            + ('<p class="muted" id="chart-truncated">The chart shows the newest checkpoints only.</p>'
               if page.history_truncated else "")
            + "</section>")


def _chart_deferred(page: ThreadPage) -> str:
    """A long thread's chart, drawn on its own request (``/chart``: a walk of the checkpoint history, each read
    in full): the page's script puts it in place once drawn; without script, a link to it."""
    href = _url("/chart", id=page.thread_id, epage=page.events_page)
    return (f'<section id="chart-section" data-chart="{href}"><h2>Tokens sent per model call</h2>'
            '<p class="muted" id="chart-deferred">The chart walks the thread\'s checkpoint history, so it is drawn '
            f'after the page: <a id="draw-chart" href="{href}">draw the chart</a>.</p></section>')


def chart_page(page: ThreadPage, *, where: str) -> str:
    """The chart of one thread on its own (what :func:`_chart_deferred` fetches, or links to)."""
    tid = page.thread_id
    body = (f'<h1>Thread <span class="tid">{esc(tid)}</span></h1>'
            f'<p><a href="{_url("/thread", id=tid, epage=page.events_page)}">back to the thread</a></p>'
            + chart_section(page, stats=True))
    return _layout(f"chart of {tid}", body, where=where)


def thread_page(page: ThreadPage, *, where: str, csrf: str | None, flash: str | None = None,
                has_archive: bool = True, context: str | None = None) -> str:
    tid = page.thread_id
    has_archive = has_archive and page.has_archive
    notes = []
    if flash:
        notes.append(f'<p class="flash" id="flash">{esc(flash)}</p>')
    if page.orphans:
        shown = ", ".join(f"#{r}" for r in page.orphans[:8])
        if has_archive:
            notes.append(f'<p class="warn" id="orphans">{len(page.orphans)} marker(s) or fold(s) name text the '
                         f"archive no longer holds (expired or deleted?): {esc(shown)}. That text cannot be shown "
                         "or restored.</p>")
        else:
            notes.append(f'<p class="warn" id="no-archive">No archive configured: this inspector reads only the '
                         f"checkpoints, so the text behind {len(page.orphans)} marker(s) or fold(s) ({esc(shown)}) "
                         "is not shown. It did not expire: it is wherever the agent's FreeMemory(archive=...) "
                         "stored it (none given: it was not kept). Open the inspector with that archive.</p>")
    elif not has_archive:
        notes.append('<p class="muted" id="no-archive">No archive configured: events come from the ledger in '
                     "state; removed text is not shown.</p>")
    notes.append(_skipped_note(page))
    if page.rebuild_error and not page.skipped:
        notes.append(f'<p class="warn">The original could be rebuilt only in part: {esc(page.rebuild_error)}</p>')
    restore_all = (_restore_form(tid, csrf, None, f"restore all {page.restorable_total} events")
                   if csrf and page.restorable_total else "")
    pruned = "".join(message_html(m, thread_id=tid, pruned=True) for m in page.pruned)
    mlo = (page.messages_page - 1) * page.page_size
    shown_msgs = max(len(page.original), len(page.pruned))
    if page.original_rebuilt:
        original = "".join(message_html(m, thread_id=tid, pruned=False) for m in page.original)
        context_count = (f"{page.freed_total:,} removed span(s) and {page.folded_total:,} folded message(s) "
                         f"highlighted in place; messages {mlo + 1:,}–{mlo + shown_msgs:,} of "
                         f"{page.original_total:,} (original) and of {page.pruned_total:,} (what the model sees).")
    else:
        # A long thread's first view: the original needs every archived event read in full, so it is rebuilt
        # on request (then kept for the next pages).
        href = _url("/thread", id=tid, context="original", epage=page.events_page) + "#context"
        original = (f'<p class="muted" id="original-on-request">The original is rebuilt from all '
                    f"{page.events_total:,} archived events, on request: "
                    f'<a id="rebuild-original" href="{href}">rebuild and show the original</a> (kept for the '
                    "next pages).</p>")
        context_count = (f"messages {mlo + 1:,}–{mlo + shown_msgs:,} of {page.pruned_total:,} (what the model "
                         "sees); the original, with what was removed, is rebuilt on request.")
        if has_archive and not page.orphans_checked:
            notes.append('<p class="muted" id="orphans-unchecked">Markers whose text the archive no longer holds '
                         "are checked with the original.</p>")
    lo = (page.events_page - 1) * page.page_size
    shown_events = (f'<p class="muted" id="events-count">{page.events_total:,} events; showing '
                    f"{lo + 1 if page.events else 0:,}–{lo + len(page.events):,}, oldest first.</p>")
    first = "original" if page.original_rebuilt else "pruned"

    def tab(name: str, label: str) -> str:
        return f'<button class="tab{" active" if name == first else ""}" data-tab="{name}" id="tab-{name}">{label}</button>'

    body = (
        f'<h1>Thread <span class="tid">{esc(tid)}</span></h1>'
        f'<p class="muted">checkpoint {esc(page.checkpoint_id)}'
        + (f" · {esc(_chart_stats(page))}" if page.chart_drawn else "") + "</p>"
        + "".join(notes)
        + (chart_section(page) if page.chart_drawn else _chart_deferred(page))
        + f'<section id="events-section"><h2>Cleaning events</h2>{restore_all}{shown_events}'
        + _pager(page, "epage", "events-section", context)
        + events_table(page.events, tid, csrf=csrf, has_archive=has_archive)
        + "</section>"
        + '<section id="context"><h2>Context</h2><div class="tabs" role="tablist">'
        + tab("original", "original, with what was removed") + tab("pruned", "what the model sees now")
        + f'</div><p class="muted" id="context-count">{context_count}</p>'
        + _pager(page, "mpage", "context", context)
        + f'<div class="pane{" hidden" if first != "original" else ""}" id="pane-original">{original}</div>'
        f'<div class="pane{" hidden" if first != "pruned" else ""}" id="pane-pruned">{pruned}</div></section>'
        + "<section><h2>Recall</h2>"
        '<form class="recall" method="get" action="/recall">'
        f'<input type="hidden" name="thread" value="{esc(tid)}">'
        '<input name="ref" placeholder="a marker\'s #id or a fold handle" required> '
        '<button type="submit">recall</button></form></section>'
    )
    return _layout(f"thread {tid}", body, where=where, csrf=csrf, crumbs=f"/ {esc(tid)}")


# ------------------------------------------------------------------------------------------------ event


def event_page(thread_id: str, event: Mapping[str, Any], context: Sequence[MessageText], *, where: str,
               csrf: str | None, restorable: bool) -> str:
    eid = str(event.get("id"))
    rows = [("trigger", esc(event.get("trigger"))), ("cleaner", esc(event.get("cleaner"))),
            ("time (UTC)", esc(_when(event.get("created_at")))),
            ("tokens before → after", f"{_n(event.get('tokens_before'))} → {_n(event.get('tokens_after'))}"),
            ("freed", _n(event.get("tokens_freed", 0))),
            ("commands proposed / applied", f"{_n(event.get('proposed', 0))} / {_n(event.get('applied_commands', 0))}"),
            ("cache cost", _cache_cost(event)),
            ("latency", f"{float(event.get('latency_s') or 0) * 1000:.1f} ms"),
            ("restored", esc(_when(event.get("restored_at"))) if event.get("restored_at") else "no")]
    if isinstance(event.get("cache"), Mapping) and event["cache"]:
        rows.append(("cache detail", f"<code>{esc(json.dumps(dict(event['cache']), default=str))}</code>"))
    for key in ("refused", "error", "note"):
        if event.get(key):
            rows.append((key, esc(event[key])))
    if event.get("rejected"):
        rows.append(("rejected", "<br>".join(esc(json.dumps(r, default=str)) for r in event["rejected"])))
    summary = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    raw = (f'<details><summary>the cleaner\'s raw answer</summary><pre class="text">{esc(event["raw"])}</pre>'
           "</details>" if event.get("raw") else "")
    spans = []
    for r, round_spans in enumerate(event.get("rounds") or []):
        for s in round_spans:
            spans.append(f"<tr><td>{r + 1}</td><td>{esc(s.get('message_id') or s.get('message_index'))}</td>"
                         f"<td>{esc(s.get('field'))}</td><td class=\"num\">{_n(s.get('tokens'))}</td>"
                         f'<td><pre class="text span-text">{esc(s.get("original"))}</pre></td></tr>')
    spans_html = ('<table id="spans"><thead><tr><th>round</th><th>message</th><th>field</th><th>tokens</th>'
                  f"<th>removed text</th></tr></thead><tbody>{''.join(spans)}</tbody></table>" if spans
                  else '<p class="muted">No spans removed (or the archive does not hold them).</p>')
    folds = []
    for f in event.get("folds") or []:
        if not isinstance(f, Mapping):
            continue
        folds.append(f'<div class="fold-record"><p>fold <b>{esc(f.get("handle"))}</b>: '
                     f"{_n(f.get('n_messages', len(f.get('messages') or [])))} messages, {_n(f.get('tokens'))} "
                     f"tokens → a digest of {_n(f.get('digest_tokens'))} tokens</p>"
                     + (f'<pre class="text digest">{esc(f.get("digest"))}</pre>' if f.get("digest") else "")
                     + "</div>")
    in_place = "".join(message_html(m, thread_id=thread_id, pruned=False, focus=eid) for m in context)
    action = _restore_form(thread_id, csrf, eid, "restore this event") if (csrf and restorable) else ""
    body = (
        f'<h1>Event <span class="eid">{esc(eid)}</span></h1>'
        f'<p><a href="{_url("/thread", id=thread_id)}">← thread {esc(thread_id)}</a></p>{action}'
        f'<table class="summary" id="event-summary">{summary}</table>{raw}'
        f"<section><h2>Removed spans</h2>{spans_html}</section>"
        + (f"<section><h2>Folds</h2>{''.join(folds)}</section>" if folds else "")
        + "<section><h2>In place, in the original</h2>"
        + (in_place or '<p class="muted">This event\'s text is not in the rebuilt original (restored already, or '
           "not archived).</p>")
        + "</section>"
    )
    return _layout(f"event {eid}", body, where=where, csrf=csrf,
                   crumbs=f'/ <a href="{_url("/thread", id=thread_id)}">{esc(thread_id)}</a> / {esc(eid)}')


def recall_page(thread_id: str, ref: str, texts: Sequence[str], *, where: str) -> str:
    if texts:
        found = "".join(f'<pre class="text recalled">{esc(t)}</pre>' for t in texts)
    else:
        found = f'<p class="empty" id="nothing-recalled">The archive holds nothing under {esc(ref)}.</p>'
    body = (f"<h1>Recall <span class=\"eid\">{esc(ref)}</span></h1>"
            f'<p><a href="{_url("/thread", id=thread_id)}">← thread {esc(thread_id)}</a></p>'
            '<p class="muted">archived text, exactly as it was removed (untrusted: shown as text)</p>' + found)
    return _layout(f"recall {ref}", body, where=where)
