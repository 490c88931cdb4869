"""Real audio for the audio-plugin tests, generated once per session: espeak-ng speech in
several voices, sox tones (48 kHz stereo, 44.1 kHz mono, a long clip, a very short one),
system sounds from /usr/share/sounds when present, and two broken files.

Without espeak-ng / sox (Debian packages in requirements-apt.txt) the tests that need them
are skipped with the reason."""

import os
import shutil
import subprocess
from types import SimpleNamespace

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
APT_HINT = "apt-get install -y $(cat requirements-apt.txt)"

SPEECH = [  # (file stem, espeak-ng voice, text)
    ("fox_en", "en", "the quick brown fox jumps over the lazy dog"),
    ("hello_f3", "en-us+f3", "hello there, how are you today"),
    ("zahlen_de", "de", "eins zwei drei vier fünf sechs"),
    ("bonjour_fr", "fr", "bonjour tout le monde"),
    ("hola_es", "es", "hola amigos"),
    ("numbers_m3", "en+m3", "one two three four five six seven eight nine ten"),
]
TONES = [  # (file stem, sox arguments after the output file)
    ("a440_48k_stereo", ["-r", "48000", "-c", "2"], ["synth", "1.5", "sine", "440"]),
    ("lr_48k_stereo", ["-r", "48000", "-c", "2"], ["synth", "1.5", "sine", "440", "sine", "1000"]),
    ("c262_44k", ["-r", "44100", "-c", "1"], ["synth", "2.0", "sine", "262"]),
    ("sweep_long_22k", ["-r", "22050", "-c", "1"], ["synth", "12.5", "sine", "200-3000"]),
    ("blip_8k", ["-r", "8000", "-c", "1"], ["synth", "0.01", "square", "500"]),
    ("noise_32k", ["-r", "32000", "-c", "1"], ["synth", "3.0", "pinknoise", "vol", "0.3"]),
    ("hour_like_44k", ["-r", "44100", "-c", "1"], ["synth", "40.0", "sine", "100-4000"]),
]
SYSTEM_SOUNDS = [
    "/usr/share/sounds/freedesktop/stereo/bell.oga",
    "/usr/share/sounds/freedesktop/stereo/complete.oga",
    "/usr/share/sounds/freedesktop/stereo/message.oga",
    "/usr/share/sounds/alsa/Front_Center.wav",
    "/usr/share/sounds/alsa/Noise.wav",
]


def _run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="session")
def audio_corpus(tmp_path_factory):
    """Folder ``root`` with ``speech/*.wav``, ``tone/*.wav``, ``system/*`` (if available) and
    the lists of paths; ``corrupt`` holds unreadable files (outside the class folders)."""
    missing = [b for b in ("espeak-ng", "sox") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian: {APT_HINT}); no test audio")
    root = tmp_path_factory.mktemp("audio_corpus")
    speech, tones, system = [], [], []
    os.makedirs(root / "speech")
    os.makedirs(root / "tone")
    for stem, voice, text in SPEECH:
        out = str(root / "speech" / f"{stem}.wav")
        _run(["espeak-ng", "-v", voice, "-w", out, text])
        speech.append(out)
    for stem, fmt, synth in TONES:
        out = str(root / "tone" / f"{stem}.wav")
        _run(["sox", "-n", *fmt, out, *synth])
        tones.append(out)
    present = [p for p in SYSTEM_SOUNDS if os.path.isfile(p)]
    if present:
        os.makedirs(root / "system")
        for p in present:
            dst = str(root / "system" / os.path.basename(p))
            shutil.copyfile(p, dst)
            system.append(dst)
    bad = root / "broken"
    os.makedirs(bad)
    (bad / "random_bytes.wav").write_bytes(os.urandom(4096))
    with open(speech[0], "rb") as f:
        head = f.read(44)
    (bad / "header_only.wav").write_bytes(head)  # a valid header and no samples
    (bad / "truncated_header.wav").write_bytes(head[:30])  # cut inside the header
    return SimpleNamespace(
        root=str(root),
        speech=speech,
        tones={os.path.splitext(os.path.basename(t))[0]: t for t in tones},
        system=system,
        corrupt=[str(bad / n) for n in ("random_bytes.wav", "header_only.wav", "truncated_header.wav")],
        good=speech + tones + system,
    )


@pytest.fixture(scope="session")
def clean_corpus(audio_corpus, tmp_path_factory):
    """The readable clips only, in class folders speech/ tone/ (system/), for prepare_audio."""
    root = tmp_path_factory.mktemp("clean_corpus")
    for p in audio_corpus.good:
        cls = os.path.basename(os.path.dirname(p))
        os.makedirs(root / cls, exist_ok=True)
        shutil.copyfile(p, root / cls / os.path.basename(p))
    return str(root)


@pytest.fixture(scope="session")
def prepare_audio():
    """bridle_audio.prepare (tools/prepare_audio.py runs its main)."""
    from bridle_audio import prepare

    return prepare


@pytest.fixture(scope="session")
def compute_audio_stats():
    """bridle_audio.stats (tools/compute_audio_stats.py runs its main)."""
    from bridle_audio import stats

    return stats


def make_cfg(**audio):
    """Core defaults + the audio keys (only this plugin's add_config), with ``INPUT.AUDIO``
    overrides given as keyword arguments, e.g. ``make_cfg(ROLL=False)``."""
    import bridle_audio
    from bridle.config import get_cfg

    cfg = get_cfg(load_plugins=False)
    bridle_audio.add_config(cfg)
    for k, v in audio.items():
        cfg.INPUT.AUDIO[k] = v
    return cfg


@pytest.fixture
def cfg_factory():
    return make_cfg


@pytest.fixture(scope="session")
def repo_root():
    return REPO
