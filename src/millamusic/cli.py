"""`millamusic` command line. Errors become exit codes here and nowhere else."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
import traceback
from importlib.metadata import version
from pathlib import Path

import click

from millamusic.core.errors import EngineUnavailable, ExportError, MillaError, RenderError, SpecError

# Start-up: each command imports what it runs inside its function (an unchanged `render` answers from its
# stamp without loading the spec machinery, docs/performance.md); only click and the errors load here.

# render, album and status find the stage cache the same way (see _cache_dir)
cache_dir_option = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                                help="Stage cache [default: $MILLAMUSIC_CACHE or OUT/.millamusic/cache].")
# The only way to let a spec read files outside its catalogue (docs/errors.md: paths)
catalogue_option = click.option(
    "--catalogue", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
    help="The folder the spec's files (lyrics, melody, reference, artwork, artist profile, album songs) must lie "
         "in [default: the folder above the spec's folder].")


# Exit codes, in one place (docs/errors.md). 1 is `check`'s "a master failed a delivery rule".
EXIT_CODES: dict[type[MillaError], int] = {
    SpecError: 2,
    EngineUnavailable: 3,
    RenderError: 4,
    ExportError: 5,
}
DELIVERY_CHECK_FAILED = 1
BUG = 70  # EX_SOFTWARE (sysexits.h): an internal error, never a user's mistake


def exit_code_for(error: MillaError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    raise TypeError(f"{type(error).__name__} has no exit code: add it to millamusic.cli.EXIT_CODES")


def report_bug(error: BaseException, *, show: bool) -> Path | None:
    """Say that `error` is a bug in one line, and where its full traceback went (stderr with
    --debug, else a file in the temp folder). Returns the file written, if any."""
    text = "".join(traceback.format_exception(error))
    header = f"millamusic {version('millamusic')}, Python {platform.python_version()}, {platform.platform()}\n" \
             f"command: {' '.join(sys.argv)}\n\n"
    notes = " ".join(getattr(error, "__notes__", []))
    said = f"error: internal error (a bug in millamusic, not in your input): {type(error).__name__}: {error}"
    said += f" [{notes}]" if notes else ""
    if show:
        click.echo(header + text, err=True, nl=False)
        click.echo(said, err=True)
        return None
    path = Path(tempfile.gettempdir()) / f"millamusic-bug-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    try:
        path.write_text(header + text)
    except OSError:  # no writable temp folder: the traceback goes to the terminal instead
        click.echo(header + text, err=True, nl=False)
        click.echo(said, err=True)
        return None
    click.echo(f"{said}. The full traceback is in {path} (or run again with --debug); please report it.", err=True)
    return path


class _Commands(click.Group):
    """Every command's errors, in one place: a MillaError (the user's to fix) prints one line and
    exits with its code; anything else is a bug and keeps its traceback (exit 70)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MillaError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(exit_code_for(error))
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:
            report_bug(error, show=ctx.params.get("debug", False))
            ctx.exit(BUG)


@click.group(cls=_Commands)
@click.version_option(package_name="millamusic")
@click.option("--debug", is_flag=True, help="Print the full traceback of an internal error (a bug) on stderr.")
def main(debug: bool) -> None:
    """Turn song specs into stems, masters, lyrics and AI credits."""


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Root for masters/, stems/ and lyrics/.")
@cache_dir_option
@click.option("--force", is_flag=True, help="Re-run every stage, ignoring the cache.")
@click.option("--backing", default=None, help="Backing engine, overriding the spec (see `millamusic engines`).")
@click.option("--vocals", default=None, help="Vocal engine, overriding the spec.")
@click.option("--profile", "profiles", multiple=True, metavar="NAME[,NAME...]",
              help="Delivery profile(s), overriding the spec: spotify, apple, youtube, amazon, deezer, cd, loud, "
                   "ebu_r128. Repeat or comma-separate for several; one set of masters per profile.")
@click.option("--soundfont", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Play the arranger's parts with this General MIDI .sf2 through TinySoundFont (overrides the spec).")
@click.option("--model", default=None,
              help="Backing checkpoint: a hub id (facebook/musicgen-melody) or a local folder (overrides the spec).")
@click.option("--device", default=None, help="Where MusicGen runs: auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps.")
@click.option("--acknowledge-noncommercial", is_flag=True,
              help="Release with a non-commercially licensed model anyway (recorded in release.json).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout instead of a table.")
@click.option("--section", default=None, metavar="NAME",
              help="Preview one section (\"Chorus 2\": the 2nd one named Chorus) into previews/<slug>/, mastered "
                   "alone, with a bar of pre-roll; no release is made (docs/previews.md).")
@click.option("--bars", default=None, metavar="FIRST-LAST",
              help="Preview bars FIRST to LAST (1-based, inclusive) into previews/<slug>/, like --section.")
@catalogue_option
def render(spec: Path, out_root: Path, cache_dir: Path | None, force: bool, backing: str | None,
           vocals: str | None, profiles: tuple[str, ...], soundfont: Path | None, model: str | None, device: str | None,
           acknowledge_noncommercial: bool, as_json: bool, section: str | None, bars: str | None,
           catalogue: Path | None) -> None:
    """Render SPEC (a song YAML) into a release, or one section or bar range of it as a preview."""
    from millamusic.pipeline.stamp import RenderCall, installed_code, remove_stamp, replay, write_stamp

    cache = _cache_dir(cache_dir, out_root)
    call = RenderCall(spec, out_root, cache, backing, vocals, _split_names(profiles), soundfont, model, device,
                      acknowledge_noncommercial, catalogue)
    debug = click.get_current_context().find_root().params.get("debug", False)
    preview_only = section is not None or bars is not None
    if not preview_only and not force:  # before anything heavy loads: an unchanged render answers from its stamp
        answer, why = replay(call)
        if debug:
            click.echo(f"render stamp: {'nothing changed, result replayed' if answer else f'not used: {why}'}",
                       err=True)
        if answer is not None:
            _print_replay(answer, spec, as_json)
            return
    code_before, started_ns = installed_code(), time.time_ns()  # before the render reads anything

    from rich.console import Console
    from rich.markup import escape

    from millamusic.compose import compose
    from millamusic.instruments.soundfont import is_soundfont
    from millamusic.pipeline.preview import render_preview
    from millamusic.pipeline.render import render as render_song
    from millamusic.pipeline.stages import RenderOptions, song_sources
    from millamusic.spec.artist import load_artist
    from millamusic.spec.song import load_song

    console = Console(stderr=True, quiet=False)
    if soundfont is not None:

        if not is_soundfont(soundfont):
            raise click.BadParameter(f"{soundfont} is not a SoundFont 2 file (no RIFF 'sfbk' header); "
                                     "give a General MIDI .sf2 file", param_hint="--soundfont")
    song = load_song(spec, catalogue)
    sources = song_sources(song)  # what it read, hashed now: the stamp vouches for these
    compose(song)  # what `check` checks (syllables that do not fit ...), before OUT is touched
    options = RenderOptions(out_root=out_root, cache_dir=cache, force=force, backing=backing, vocals=vocals,
                            profiles=_split_names(profiles), soundfont=soundfont, model=model, device=device,
                            acknowledge_noncommercial=acknowledge_noncommercial)
    if not preview_only:
        remove_stamp(call)  # this render may change what it describes: it is written again when the render ends
    warnings: list[tuple[str, str]] = []  # shown again by a cached run, so by a replay too
    with console.status("") as status:
        def progress(stage: str, state: str) -> None:
            if state == "start":
                status.update(f"[bold]{escape(song.spec.title)}[/]: {escape(stage)} ...")
            else:
                if state.startswith("warning: "):
                    warnings.append((stage, state))
                console.print(f"  {stage:<8} {state}", markup=False)  # "master[spotify]" is not markup
        console.print(f"[bold]{escape(song.spec.title)}[/] ({escape(str(spec))})")
        if preview_only:
            preview = render_preview(song, options, progress, section=section, bars=bars)
        else:
            result = render_song(song, options, progress)
    if preview_only:
        _print_preview(preview, console, as_json)
        return

    def artist_digest() -> str | None:  # the profile and the voice files it names, read again now
        try:
            return load_artist(song.artist.path).sha256
        except MillaError:
            return None

    engines = (backing or song.spec.engines.backing, vocals or song.vocal_engine)
    answer = result.to_dict()
    said = write_stamp(call, song, sources, answer, warnings, code_before, started_ns, engines,
                       artist_digest if song.artist is not None else None)
    if debug:
        click.echo(f"render stamp: {said}", err=True)
    _print_release(answer, console, as_json)


def _print_release(result: dict, console, as_json: bool) -> None:
    """A render's answer (RenderResult.to_dict()): JSON on stdout, or its masters in words on stderr."""
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    for name, loud in result["loudness"].items():
        console.print(f"  {name:<8} {loud['integrated_lufs']:.1f} LUFS, true peak {loud['true_peak_dbtp']:.2f} dBTP, "
                      f"LRA {loud['lra_lu']:.1f} LU", markup=False)
        console.print(f"           {Path(result['files'][f'{name}:wav']).parent}", markup=False, soft_wrap=True)
    console.print(f"  release  {result['release_path']}")
    signed = json.loads(Path(result["release_path"]).read_text())["provenance"]
    local = (" - a local self-signed identity (set MILLAMUSIC_SIGNING_CERT and MILLAMUSIC_SIGNING_KEY to sign "
             "as yourself; docs/provenance.md)") if signed["self_signed"] else ""
    console.print(f"  signed   {signed['signer']}{local}", markup=False, soft_wrap=True)
    console.print(f"  done in {result['seconds']:.1f} s")


def _print_replay(answer, spec: Path, as_json: bool) -> None:
    """What an all-cached render prints, from its stamp (pipeline.stamp.Replay)."""
    if as_json:
        click.echo(json.dumps(answer.result, indent=1))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, quiet=False)
    console.print(f"[bold]{escape(answer.title)}[/] ({escape(str(spec))})")
    for stage in answer.result["stages"]:
        console.print(f"  {stage['name']:<8} cached", markup=False)
        for _, warning in (w for w in answer.warnings if w[0] == stage["name"]):
            console.print(f"  {stage['name']:<8} {warning}", markup=False)
    console.print(f"  {'publish':<8} unchanged: masters/{answer.result['slug']}/ already holds this release",
                  markup=False)
    _print_release(answer.result, console, as_json)


@main.command()
@click.argument("reference", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--title", required=True, help="The cover's title (usually the original's).")
@click.option("--lyrics", "lyrics_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The lyric sheet ([Verse 1], [Chorus] ... headers): mapped to the sections heard and the "
                   "melody fitted to its syllables [default: a skeleton, one 'la' per note heard].")
@click.option("--vocal-stem", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The sung part alone (an a-cappella or separated stem) to transcribe the melody from.")
@click.option("--out-spec", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where the draft spec goes [default: songs/<title-slug>.yaml]; its lyrics and MIDI go beside it.")
@click.option("--artist-profile", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The artist profile whose range the transposition fits (and whose name the spec gets).")
@click.option("--artist", default=None, help="The performing artist [default: the profile's name].")
@click.option("--genre", type=click.Choice(["pop", "rock"]), default="pop", show_default=True)
@click.option("--tempo", "tempo_hint", type=click.FloatRange(40, 240), default=None,
              help="The tempo you hear, to pick the beat level (e.g. 72 when 144 was drafted).")
@click.option("--original-artist", default=None, help="Who first released the song (release.original.artist).")
@click.option("--songwriter", "songwriters", multiple=True, help="A writer of the song (repeat for each).")
@click.option("--original-year", type=click.IntRange(1800, 2100), default=None)
@click.option("--force", is_flag=True, help="Replace an earlier draft at --out-spec.")
def cover(reference: Path, title: str, lyrics_file: Path | None, vocal_stem: Path | None, out_spec: Path | None,
          artist_profile: Path | None, artist: str | None, genre: str, tempo_hint: float | None,
          original_artist: str | None, songwriters: tuple[str, ...], original_year: int | None, force: bool) -> None:
    """Draft a cover's song spec from the REFERENCE recording (WAV, FLAC, MP3, OGG): tempo and bars,
    key, chords per bar, sections, and the sung melody as MIDI, transposed into the artist's range.

    Nothing is written unless the whole draft loads and composes as `millamusic render` will read it."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.markup import escape

    from millamusic.cover.analysis import analyse_reference
    from millamusic.cover.draft import draft_cover
    from millamusic.cover.files import write_draft
    from millamusic.spec.artist import load_artist
    from millamusic.spec.song import OriginalWork, slugify

    console = Console(stderr=True)
    profile = load_artist(artist_profile) if artist_profile else None
    performer = artist or (profile.profile.name if profile else None)
    if not performer:
        raise click.UsageError("name the performing artist: --artist NAME or --artist-profile FILE")
    if bool(original_artist) != bool(songwriters):
        raise click.UsageError("name the original work whole: --original-artist with at least one --songwriter "
                               "(release.original), or neither (the draft then leaves it for you to fill in)")
    original = None
    if original_artist:
        try:
            original = OriginalWork(title=title, artist=original_artist, songwriters=list(songwriters),
                                    year=original_year)
        except ValidationError as error:
            raise click.UsageError(f"release.original: {error.errors()[0]['msg']}") from None
    sheet = lyrics_file.read_text(encoding="utf-8") if lyrics_file else None
    out_spec = out_spec or Path("songs") / f"{slugify(title)}.yaml"
    console.print(f"[bold]{escape(title)}[/]: listening to {escape(str(reference))}")
    analysis = analyse_reference(reference, vocal_stem=vocal_stem, tempo_hint=tempo_hint)
    draft = draft_cover(analysis, title=title, artist=performer, genre=genre,
                        language=profile.profile.voice.language if profile else "en-us",
                        voice_range=profile.range_midi if profile else None, sheet=sheet,
                        sheet_file=str(lyrics_file or ""))
    written = write_draft(draft, out_spec, artist_profile=artist_profile, original=original, force=force)
    for finding in draft.findings:
        console.print(f"  {finding}", markup=False, soft_wrap=True)
    form = " ".join(f"{s.name}({s.bars})" for s in draft.sections)
    console.print(f"  key {analysis.key.name}, form: {form}", markup=False, soft_wrap=True)
    for role, path in written.items():
        if role == "reference":
            console.print(f"  copied {reference} to {path}: a spec reads files only inside its catalogue "
                          f"({path.parent.parent})", markup=False, soft_wrap=True)
        else:
            console.print(f"  wrote {path}", markup=False)
    console.print(f"  next: edit {written['spec']}, then `millamusic render {written['spec']}`", markup=False)


@main.command()
@click.argument("title")
@click.option("--genre", type=click.Choice(["pop", "rock"]), default="pop", show_default=True)
@click.option("--artist-profile", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The artist profile the song names (voice, range, disclosure) and whose name it takes.")
@click.option("--artist", default=None, help="The performing artist [default: the profile's name].")
@click.option("--songs", "songs_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("songs"),
              show_default=True, help="Where the spec goes.")
@click.option("--lyrics", "lyrics_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("lyrics"),
              show_default=True, help="Where the lyric sheet goes.")
@click.option("--force", is_flag=True, help="Replace a song of that title.")
def new(title: str, genre: str, artist_profile: Path | None, artist: str | None, songs_dir: Path, lyrics_dir: Path,
        force: bool) -> None:
    """Start a new song called TITLE: a commented spec in songs/ and a lyric sheet in lyrics/ that
    render as they are, for you to edit."""
    from millamusic.spec.artist import load_artist
    from millamusic.starter import write_starter

    profile = load_artist(artist_profile) if artist_profile else None
    performer = artist or (profile.profile.name if profile else None)
    if not performer:
        raise click.UsageError("name the performing artist: --artist NAME or --artist-profile FILE")
    spec, sheet = write_starter(title, genre=genre, artist=performer, artist_profile=artist_profile,
                                songs=songs_dir, lyrics=lyrics_dir, force=force)
    click.echo(f"wrote {spec}")
    click.echo(f"wrote {sheet}")
    click.echo(f"next: write your words in {sheet}, then `millamusic render {spec}`")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
def provenance(files: tuple[Path, ...]) -> None:
    """Print the signed Content Credentials (C2PA) of delivered FILES in words: who made what, with
    which model, signed by whom, and whether the file is unchanged since it was signed.

    Exit 1 when a file has none or they do not validate."""
    from millamusic.release.provenance import describe, read_provenance

    bad = 0
    for path in files:
        found = read_provenance(path)
        click.echo(f"{path}:")
        for line in describe(found):
            click.echo(f"  {line}")
        bad += (not found.present) or bool(found.failures)
    if bad:
        raise SystemExit(DELIVERY_CHECK_FAILED)


@main.command()
@click.argument("album_spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Root for masters/, stems/, lyrics/ and album/ [default: albums/<album-slug>].")
@cache_dir_option
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="Songs rendered at once, each in its own process (local executor) [default: 1].")
@click.option("--force", is_flag=True, help="Re-run every stage of every track, ignoring the cache.")
@click.option("--acknowledge-noncommercial", is_flag=True,
              help="Release with a non-commercially licensed model anyway (recorded in release.json).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine (--jobs processes); ray: songs as tasks on a Ray cluster "
                   "(pip install 'millamusic[ray]'), MusicGen stages on GPU workers.")
@click.option("--address", default=None,
              help="The Ray cluster's address (ray://HOST:10001, HOST:6379 or auto) [default: start a local Ray]. "
                   "OUT and the cache must be on a file system every worker sees, at the same path.")
@catalogue_option
def album(album_spec: Path, out_root: Path | None, cache_dir: Path | None, jobs: int | None, force: bool,
          acknowledge_noncommercial: bool, executor: str, address: str | None, catalogue: Path | None) -> None:
    """Build ALBUM_SPEC (an album YAML): every track rendered, mastered and tagged as one release.

    Resumable: run it again after a crash or a kill and only unfinished stages run."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from millamusic.pipeline.album import AlbumOptions, build_album
    from millamusic.spec.album import load_album

    console = Console(stderr=True)
    if executor == "ray" and jobs is not None:
        raise click.UsageError("--jobs is for the local executor; on Ray the cluster's CPUs and GPUs decide how "
                               "many songs run at once")
    if address is not None and executor != "ray":
        raise click.UsageError("--address names a Ray cluster: use it with --executor ray")
    jobs = jobs or 1
    spec = load_album(album_spec, catalogue)
    root = out_root or Path("albums") / spec.slug
    cache = _cache_dir(cache_dir, root)
    at_once = f"{jobs} at once" if executor == "local" else "on Ray"
    console.print(f"[bold]{escape(spec.spec.title)}[/] ({escape(str(album_spec))}): {len(spec.tracks)} tracks, "
                  f"{at_once}")

    def progress(number: int, title: str, stage: str, state: str) -> None:
        who = f"{number:>2} {title}" if number else "   album"
        if state != "start":
            console.print(f"  {who:<28.28} {stage:<18} {state}", markup=False, soft_wrap=True)

    result = build_album(spec, AlbumOptions(out_root=root, cache_dir=cache, jobs=jobs, force=force,
                                            acknowledge_noncommercial=acknowledge_noncommercial,
                                            executor=executor, address=address), progress)
    table = Table(title=f"{result.title}: {len(result.tracks)} tracks in {result.seconds:.1f} s", title_justify="left")
    for column in ("#", "track", "duration"):
        table.add_column(column, no_wrap=True)
    profiles = list(result.tracks[0].loudness) if result.tracks else []
    for name in profiles:
        table.add_column(f"{name} LUFS", justify="right")
        table.add_column(f"{name} dBTP", justify="right")
    table.add_column("engines", no_wrap=True)
    table.add_column("cache hits", justify="right", no_wrap=True)
    for track in result.tracks:
        row = [str(track.number), track.title, f"{int(track.seconds // 60)}:{int(track.seconds % 60):02d}"]
        for name in profiles:
            row += [f"{track.loudness[name]['integrated_lufs']:.1f}", f"{track.loudness[name]['true_peak_dbtp']:.2f}"]
        row += [f"{track.engines['backing']}+{track.engines['vocals']}", f"{track.cache_hits}/{track.stages}"]
        table.add_row(*row)
    out = Console(width=max(100, Console().width))
    out.print(table)
    for name, lufs in result.album_lufs.items():
        if lufs is not None:
            out.print(f"album loudness ({name}): {lufs:.2f} LUFS", markup=False)
    out.print(f"record  {result.record_path}", markup=False)
    out.print(f"report  {result.report_path}", markup=False)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The build's root, to find its cache [default: . for a song, albums/<album-slug> for an album].")
@cache_dir_option
@click.option("--profile", "profiles", multiple=True, metavar="NAME[,NAME...]",
              help="Delivery profile(s), as given to `render` (songs only).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")
@catalogue_option
def status(spec: Path, out_root: Path | None, cache_dir: Path | None, profiles: tuple[str, ...],
           as_json: bool, catalogue: Path | None) -> None:
    """What `render` or `album` would reuse from the cache for SPEC, and why each other stage runs.

    Nothing is rendered: "cached" stages are in the cache, "runs" stages are not (with what changed
    since their last run), "waits" stages read the output of a stage that runs first."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from millamusic.pipeline.stages import RenderOptions
    from millamusic.pipeline.status import AlbumStatus, album_status, song_status, status_json
    from millamusic.spec.album import load_album
    from millamusic.spec.song import is_album_spec, load_song

    if is_album_spec(spec):
        if profiles:
            raise click.UsageError("--profile is for songs; an album's profiles come from its spec")
        album_spec = load_album(spec, catalogue)
        root = out_root or Path("albums") / album_spec.slug
        options = RenderOptions(out_root=root, cache_dir=_cache_dir(cache_dir, root))
        result: object = album_status(album_spec, options)
        sections = [("album", result.album)] if result.album else []
        sections += [(f"{number} {title}", rows) for number, title, rows in result.tracks]
    else:
        song = load_song(spec, catalogue)
        root = out_root or Path(".")
        options = RenderOptions(out_root=root, cache_dir=_cache_dir(cache_dir, root),
                                profiles=_split_names(profiles))
        result = song_status(song, options)
        sections = [(song.spec.title, result)]
    if as_json:
        click.echo(status_json(result))
        return
    table = Table(title=escape(f"{spec}: stage cache {options.cache_dir}"), title_justify="left")
    for column in ("track" if isinstance(result, AlbumStatus) else "song", "stage", "state", "why"):
        table.add_column(column, overflow="fold")
    style = {"cached": "green", "runs": "yellow", "waits": "dim"}
    for who, rows in sections:
        for index, row in enumerate(rows):
            table.add_row(escape(who) if index == 0 else "", escape(row.stage), f"[{style[row.state]}]{row.state}[/]",
                          escape(row.why))
    Console(width=max(120, Console().width)).print(table)


def _print_preview(preview, console, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(preview.to_dict(), indent=1))
        return
    chosen, loud = preview.range, preview.loudness
    bars = f"bars {chosen.first_bar}-{chosen.last_bar}" + (f" after {chosen.pre_roll_bars} bar of pre-roll"
                                                           if chosen.pre_roll_bars else "")
    console.print(f"  preview  {chosen.name}: {bars}, {preview.seconds_in_file:.1f} s (the range starts at "
                  f"{preview.range_starts_at:.2f} s)", markup=False, soft_wrap=True)
    console.print(f"  {preview.profile:<8} {loud['integrated_lufs']:.1f} LUFS, true peak "
                  f"{loud['true_peak_dbtp']:.2f} dBTP (mastered alone; not a release, not signed)",
                  markup=False, soft_wrap=True)
    console.print(f"           {preview.wav_path}", markup=False, soft_wrap=True)
    console.print(f"  done in {preview.seconds:.1f} s")


@main.group(invoke_without_command=True)
@click.option("--out", "out_root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where the releases are (masters/<slug>/release.json), to find their cache.")
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")
@click.pass_context
def cache(ctx: click.Context, out_root: Path, cache_dir: Path | None, as_json: bool) -> None:
    """The stage cache's size per song and stage, and how much the latest renders need (docs/cache.md)."""
    if ctx.invoked_subcommand is not None:  # `cache gc`: loads what it runs itself
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from millamusic.pipeline.cache_admin import cache_usage, human

    usage = cache_usage(_cache_dir(cache_dir, out_root), out_root)
    if as_json:
        click.echo(json.dumps(usage.to_dict(), indent=1))
        return
    table = Table(title=escape(f"stage cache {usage.root}"), title_justify="left")
    for column in ("song", "stage", "entries", "size", "of it hard-linked", "needed by latest renders"):
        table.add_column(column, justify="right" if column not in ("song", "stage") else "left", no_wrap=True)
    for row in usage.rows():
        table.add_row(escape(row["song"]), escape(row["stage"]), str(row["entries"]), human(row["bytes"]),
                      human(row["linked_bytes"]), human(row["needed_bytes"]))
    if usage.other_bytes:
        table.add_row("(other)", "memos, records, phrases", "", human(usage.other_bytes), "", "")
    linked = sum(row["linked_bytes"] for row in usage.rows())
    table.add_row("[bold]total[/]", "", str(len(usage.entries)), f"[bold]{human(usage.total_bytes)}[/]",
                  human(linked), f"[bold]{human(usage.needed_bytes)}[/]")
    Console(width=max(120, Console().width)).print(table)


@cache.command("gc")
@click.option("--out", "out_root", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where the releases are: what masters/*/release.json names is kept.")
@cache_dir_option
@click.option("--keep-last", type=int, default=1, show_default=True,
              help="Keep the entries of each song's last N renders (1 or more).")
@click.option("--max-size", default=None, metavar="SIZE",
              help="Remove only the oldest unkept entries, until the cache is under SIZE (2GB, 500MB, 1.5GiB).")
@click.option("--delete", is_flag=True, help="Delete them [default: a dry run that only lists what would go].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text.")
def cache_gc(out_root: Path, cache_dir: Path | None, keep_last: int, max_size: str | None, delete: bool,
             as_json: bool) -> None:
    """Remove cache entries that no current release and no song's last N renders use.

    A dry run unless --delete. Each entry is renamed aside, then removed; with --delete nothing is
    removed while a render or album build uses the cache (exit 4: run it again when that has finished)."""
    from millamusic.pipeline.cache_admin import check_keep_last, human, parse_size, plan_gc, run_gc

    check_keep_last(keep_last)
    limit = parse_size(max_size) if max_size is not None else None
    gc = run_gc if delete else plan_gc
    plan = gc(_cache_dir(cache_dir, out_root), out_root, keep_last=keep_last, max_size=limit)
    if as_json:
        click.echo(json.dumps({**plan.to_dict(), "deleted": delete}, indent=1))
        return
    verb = "removed" if delete else "would remove"
    for entry in plan.remove:
        click.echo(f"{verb} {entry.stage}/{entry.key[:16]} ({entry.song}, {human(entry.bytes)})")
    click.echo(f"{plan.usage.root}: {human(plan.usage.total_bytes)}; {verb} {len(plan.remove)} entries, "
               f"{human(plan.freed_bytes)} freed, {human(plan.after_bytes)} left")
    if plan.over_max_size:
        click.echo(f"note: {human(plan.after_bytes)} is over --max-size {max_size}: the rest is what current releases "
                   f"and each song's last {keep_last} render(s) use. Lower --keep-last, or remove old releases "
                   "from --out, to go further", err=True)
    if not delete and plan.remove:
        click.echo("dry run: nothing was deleted; add --delete to delete them")


def _cache_dir(cache_dir: Path | None, root: Path) -> Path:
    return cache_dir or Path(os.environ.get("MILLAMUSIC_CACHE") or root / ".millamusic" / "cache")


def _split_names(values: tuple[str, ...]) -> tuple[str, ...] | None:
    """--profile a --profile b,c -> ("a", "b", "c"); None when not given."""
    names = tuple(n.strip() for value in values for n in value.split(",") if n.strip())
    return names or None


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--profile", default=None,
              help="Delivery profile the masters must meet (spotify, apple, ...); by default the name of "
                   "each file's folder (masters/<slug>/<profile>/).")
@catalogue_option
def check(paths: tuple[Path, ...], profile: str | None, catalogue: Path | None) -> None:
    """Check delivery masters (files or folders) against a profile, or validate song specs (.yaml).

    Masters: prints a table of every rule per file (format, header, loudness, true peak, tags,
    identifiers, cover, lyrics, AI fields, release record); exit 1 when any fails, 2 on bad usage.
    Specs: reports every problem of every spec given; exit 2 if any spec has one (the code of the
    first failing spec's error when that is not a spec problem, e.g. 3 for a missing engine).
    """
    specs = [p for p in paths if p.suffix.lower() in (".yaml", ".yml")]
    if specs and len(specs) != len(paths):
        raise click.UsageError("give song specs (.yaml) or masters (audio files, folders), not both at once")
    if specs:
        if profile is not None:
            raise click.UsageError("--profile applies to masters, not to song specs")
        codes = [_check_spec(spec, catalogue) for spec in specs]
        failures = [code for code in codes if code]
        if len(specs) > 1:
            click.echo(f"{len(specs) - len(failures)} of {len(specs)} specs ok", err=bool(failures))
        if failures:
            sys.exit(failures[0])
        return
    if catalogue is not None:
        raise click.UsageError("--catalogue applies to specs, not to masters")
    _check_masters(list(paths), profile)


def _check_spec(spec: Path, catalogue: Path | None) -> int:
    """Check one spec and say so; its exit code (0: ok). Every spec given is checked."""
    from millamusic.compose import compose
    from millamusic.spec.album import load_album
    from millamusic.spec.song import is_album_spec, load_song

    try:
        if is_album_spec(spec):
            album = load_album(spec, catalogue)  # every track's song spec is checked too
            for track in album.tracks:  # and composed, as a render would: lyrics that cannot be sung fit
                compose(track.song)
            click.echo(f"{spec}: ok (album, {len(album.tracks)} tracks)")
            return 0
        score = compose(load_song(spec, catalogue))
    except MillaError as error:  # this spec's problems; the next spec is still checked
        click.echo(f"error: {error}", err=True)
        return exit_code_for(error)
    click.echo(f"{spec}: ok ({len(score.bars)} bars, {score.total_seconds:.0f} s, {len(score.notes)} sung notes)")
    return 0


def _check_masters(paths: list[Path], profile: str | None) -> None:
    from rich.console import Console

    from millamusic.qa.check import check_paths, failed, results_table, summary
    from millamusic.qa.probe import CheckUsageError

    try:
        results = check_paths(paths, profile)
    except CheckUsageError as error:
        raise click.UsageError(str(error)) from None
    console = Console(soft_wrap=False)
    console.print(results_table(results))
    console.print(summary(results), markup=False)
    sys.exit(DELIVERY_CHECK_FAILED if failed(results) else 0)


@main.command()
def engines() -> None:
    """List engines and whether each is installed."""
    from millamusic.engines import REGISTRY, SPEECH_SOURCES, missing_modules, missing_speech_modules

    for name, entry in sorted(REGISTRY.items(), key=lambda item: (item[1].kind, item[0])):
        missing = missing_modules(name)
        state = "installed" if not missing else f"not installed ({entry.install_hint})"
        click.echo(f"{entry.kind:<8} {name:<10} {state}")
    for name, source in SPEECH_SOURCES.items():  # what the singer can speak with
        missing = missing_speech_modules(name)
        state = "installed" if not missing else f"not installed ({source.install_hint})"
        click.echo(f"{'speech':<8} {name:<10} {state}")


if __name__ == "__main__":  # pragma: no cover
    main()
