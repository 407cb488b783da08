"""``speech_noise_mix``: clean speech with noise layers, events, reverb and a level, every
choice recorded (see docs/audio.md). Registers itself when imported."""

from ..registry import register
from .config import SpeechNoiseMix

register("speech_noise_mix", SpeechNoiseMix, "engine.synth.speech_noise_mix.synth:SpeechNoiseMixSynth")
