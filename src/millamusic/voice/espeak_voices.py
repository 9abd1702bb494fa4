"""The singer's private espeak-ng voices: the variants written into espeak's data dir and the f0
range its spoken voice is analysed in.

Based on espeak's f3/f4 (female) and m3 (male) formants, but without echo (the 120-140 ms echo
of f2-f5 smears WORLD's analysis), flutter, roughness or breath noise (WORLD's aperiodicity
handles that).
"""

from __future__ import annotations

# Voice variants written into espeak's private data dir. Based on f3/f4 (female) and
# m3 (male) formants, but without echo (the 120-140 ms echo of f2-f5 smears WORLD's
# analysis), flutter, roughness or breath noise (WORLD's aperiodicity handles that).
VARIANTS = {
    "female": (
        "milla_f",
        """language variant
name milla_female
gender female

pitch 175 215
formant 0 110  80 150
formant 1 118  78 155 -35
formant 2 132  72 150 -220
formant 3 124  78 150
formant 4 125  80 150
formant 5 125  80 150
formant 6 115  75 150
formant 7 110  72 150
formant 8 110  72 150
stressAmp 18 18 20 20 20 20 20 20
echo 0 0
flutter 0
roughness 0
breath 0
""",
    ),
    "male": (
        "milla_m",
        """language variant
name milla_male
gender male

pitch 100 125
formant 0 100 100 100
formant 1  96  97 100
formant 2  96  97 100
formant 3  96 103 100
formant 4  95 103 100
formant 5  95 103 100
formant 6 100 100 100
formant 7 100 100 100
formant 8 100 100 100
echo 0 0
flutter 0
roughness 0
breath 0
""",
    ),
}


# f0 search range for analysing the spoken voice (Hz), per voice
ANALYSIS_F0 = {"female": (100.0, 500.0), "male": (60.0, 300.0)}
