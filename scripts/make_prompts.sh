#!/bin/sh
# Regenerate the default prompts in prompts/ (8 kHz mono 16-bit PCM WAV).
#
# Needs espeak-ng and sox (Debian: apt-get install -y espeak-ng sox).  Run from anywhere:
#   scripts/make_prompts.sh            # writes prompts/*.wav
# Per prompt it runs exactly:
#   espeak-ng -v en-gb -s 150 -a 150 -w TMP.wav "TEXT"
#   sox TMP.wav -r 8000 -c 1 -b 16 -e signed-integer prompts/NAME.wav norm -3 pad 0.2 0.3
# (espeak-ng writes 22.05 kHz; sox resamples with its anti-aliasing filter, normalises to -3 dBFS and adds
# 0.2 s lead-in / 0.3 s tail so the first syllable is not clipped by a jitter buffer.)
set -eu
cd "$(dirname "$0")/.."
out=prompts
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say() {
    name=$1
    text=$2
    espeak-ng -v en-gb -s 150 -a 150 -w "$tmp/$name.wav" "$text"
    sox "$tmp/$name.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out/$name.wav" norm -3 pad 0.2 0.3
    echo "$out/$name.wav: $text"
}

say connecting "Connecting you to the control room. Please stay on the line."
say call-recorded "This call is recorded."
say all-rooms-unavailable "Sorry, no operator can take your call right now. If this is an emergency, dial 999. Please stay on the line."
say warning-1 "This area is monitored by CCTV. Police have been alerted."
say warning-2 "You are being recorded on CCTV. Leave the area now."
say confirm-operator "Help point call. Press 1 to accept."
