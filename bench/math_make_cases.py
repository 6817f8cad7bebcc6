"""Build ``tests/data/math_equivalence.jsonl``: the hand-labelled equivalence set of the math verifier.

Usage: ``python bench/math_make_cases.py`` (deterministic; rewrites the file).

Each case is ``(category, gold, predicted answer, equal?)``, labelled by hand from the mathematics
(not from any checker's output), written as a MATH / GSM8K-style model completion by one of the
templates below (boxed, ``Answer:``, ``####``, "the answer is", a concluding "Therefore" line).
Rows: ``{"category", "gold", "answer", "completion", "equal"}``. "near_miss" collects answers that
look like the reference but are not equal; every category also has its own not-equal cases.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "math_equivalence.jsonl"

T, F = True, False

CASES: dict[str, list[tuple[str, str, bool]]] = {
    "integer": [
        ("42", "42", T), ("42", "042", T), ("42", "42.0", T), ("-7", "-7", T), ("-7", "7", F),
        ("0", "-0", T), ("100", "1 0 0", F), ("12", "13", F), ("5", "5.001", F), ("5", "4.9999", F),
        ("2024", "2024.", T), ("36", "6^2", T), ("36", "\\sqrt{1296}", T), ("8", "2^3", T),
        ("15", "15\\text{ apples}", T), ("1", "1.0000001", F), ("3", "\\frac{9}{3}", T), ("3", "\\frac{10}{3}", F),
        ("720", "6!", T), ("10", "\\binom{5}{2}", T),
    ],
    "thousands": [
        ("1000", "1,000", T), ("1000", "1{,}000", T), ("1000", "1\\,000", T), ("1234567", "1,234,567", T),
        ("7425000", "7\\,425\\,000", T), ("1000", "100", F), ("12345", "12,345", T), ("12345", "12,354", F),
        ("1000000", "10^6", T), ("23000", "\\$23{,}000", T), ("32349", "32, 349", F), ("5000", "5,000.00", T),
        ("2500", "2,050", F), ("1001", "1,001", T), ("100000", "1,0000", F), ("4096", "4,096", T),
    ],
    "fraction": [
        ("\\frac{1}{2}", "\\frac12", T), ("\\frac{1}{2}", "1/2", T), ("\\frac{1}{2}", "\\dfrac{1}{2}", T),
        ("\\frac{1}{2}", "\\tfrac{2}{4}", T), ("\\frac{1}{2}", "0.5", T), ("\\frac{3}{4}", "\\frac{4}{3}", F),
        ("\\frac{2}{3}", "\\frac{4}{6}", T), ("\\frac{2}{3}", "0.67", F), ("-\\frac{5}{8}", "\\frac{-5}{8}", T),
        ("-\\frac{5}{8}", "\\frac{5}{8}", F), ("\\frac{7}{3}", "2\\frac{1}{3}", T), ("\\frac{7}{3}", "2\\frac{1}{4}", F),
        ("\\frac{1}{12}", "0.0833333333", T), ("\\frac{1}{3}", "0.333", F), ("\\frac{9}{4}", "2.25", T),
        ("\\frac{22}{7}", "\\pi", F), ("\\frac{10}{9}", "10/9", T), ("\\frac{1}{6}", "\\frac{1}{5}", F),
        ("\\frac{3}{2}", "1\\frac{1}{2}", T), ("\\frac{5}{2}", "\\frac{5}{2}\\text{ hours}", T),
    ],
    "decimal": [
        ("0.5", ".5", T), ("0.25", "\\frac{1}{4}", T), ("3.14", "3.14", T), ("3.14", "\\pi", F),
        ("0.333", "\\frac{1}{3}", F), ("2.50", "2.5", T), ("0.125", "\\frac18", T), ("1.5", "1.05", F),
        ("0.1", "0.10", T), ("7.2", "7.20", T), ("0.001", "0.0011", F), ("12.5", "12.50", T),
        ("0.75", "75", F), ("4.8", "\\frac{24}{5}", T), ("0.6", "\\frac{3}{5}", T), ("0.6", "\\frac{2}{3}", F),
        ("18.75", "18.57", F), ("2.718", "e", F),
    ],
    "percent": [
        ("50\\%", "50", T), ("50\\%", "0.5", T), ("50\\%", "50\\%", T), ("50\\%", "5", F),
        ("25\\%", "25 percent", T), ("25\\%", "\\frac{1}{4}", T), ("25", "25\\%", T), ("0.25", "25\\%", T),
        ("12.5\\%", "12.5", T), ("12.5\\%", "0.125", T), ("12.5\\%", "1.25", F), ("40\\%", "60\\%", F),
        ("20\\%", "20 %", T), ("100\\%", "1", T), ("30\\%", "0.03", F), ("0.25", "25", F),
    ],
    "degrees": [
        ("30^\\circ", "30", T), ("30^\\circ", "\\frac{\\pi}{6}", T), ("30^\\circ", "30^{\\circ}", T),
        ("30^\\circ", "60^\\circ", F), ("45^\\circ", "\\frac{\\pi}{4}", T), ("90", "90^\\circ", T),
        ("120^\\circ", "\\frac{2\\pi}{3}", T), ("120^\\circ", "\\frac{\\pi}{3}", F), ("\\frac{1}{2}", "\\sin 30^\\circ", T),
        ("\\frac{\\sqrt{3}}{2}", "\\cos 30^\\circ", T), ("\\frac{\\sqrt{3}}{2}", "\\sin 30^\\circ", F),
        ("60^\\circ", "60 degrees", T), ("1", "\\tan 45^\\circ", T), ("72^\\circ", "72°", T), ("36^\\circ", "63^\\circ", F),
    ],
    "units": [
        ("5\\text{ cm}", "5", T), ("5", "5\\text{ cm}", T), ("5\\text{ cm}", "5\\text{ m}", F),
        ("100\\text{ cm}", "1\\text{ m}", T), ("5\\text{ kg}", "5\\text{ g}", F), ("2\\text{ hours}", "120\\text{ minutes}", T),
        ("10\\text{ square units}", "10", T), ("10 \\text{ cm}^2", "10", T), ("12\\text{ inches}", "1\\text{ foot}", T),
        ("12\\text{ inches}", "1\\text{ yard}", F), ("\\$18.90", "18.90", T), ("18.90\\text{ dollars}", "18.9", T),
        ("3\\text{ days}", "72\\text{ hours}", T), ("3\\text{ days}", "3\\text{ weeks}", F), ("7", "7\\text{ cm}^2", T),
        ("60\\text{ mph}", "60", T), ("500\\text{ mL}", "0.5\\text{ L}", T), ("2\\text{ km}", "200\\text{ m}", F),
    ],
    "text": [
        ("\\text{Evelyn}", "Evelyn", T), ("\\text{odd}", "odd", T), ("\\text{odd}", "even", F),
        ("\\text{Tuesday}", "\\text{tuesday}", T), ("\\text{Tuesday}", "Thursday", F), ("\\text{yes}", "Yes", T),
        ("\\text{no}", "yes", F), ("\\text{neither}", "\\textbf{neither}", T), ("\\text{even}", "\\text{Even}", T),
        ("\\text{Sunday}", "\\text{Monday}", F), ("\\text{circle}", "\\text{Circle}", T), ("\\text{parabola}", "\\text{ellipse}", F),
    ],
    "multiple_choice": [
        ("\\text{(B)}", "B", T), ("\\text{(B)}", "(B)", T), ("\\text{(B)}", "C", F), ("(C)", "\\textbf{(C)}", T),
        ("E", "\\mathrm{E}", T), ("D", "\\text{D}", T), ("A", "(A)", T), ("A", "B", F), ("(D)", "(E)", F),
        ("\\text{(A)}", "\\text{A}", T), ("B, D", "D, B", T), ("B, D", "B", F), ("A, C, E", "A, C, E", T),
        ("A, C", "A, D", F),
    ],
    "assignment": [
        ("3", "x = 3", T), ("x = 3", "3", T), ("x=3", "x = 3", T), ("3", "x = 4", F), ("k = 5", "5", T),
        ("5", "y = -5", F), ("2", "n = 2", T), ("f(2) = 7", "7", T), ("7", "f(2) = 8", F),
        ("a = 4", "a = \\frac{8}{2}", T), ("x = -1", "x = 1", F), ("4", "AB = 4", T), ("x = 2", "x = 2.0", T),
        ("\\frac{1}{3}", "x = \\frac{1}{3} \\approx 0.333", T), ("11", "x \\approx 11", T),
    ],
    "equation": [
        ("y = 2x + 3", "y = 3 + 2x", T), ("y = 2x + 3", "y = 2x - 3", F), ("2x + 4y - 3 = 0", "y = -\\frac{1}{2}x + \\frac{3}{4}", T),
        ("x^2 + y^2 = 25", "y^2 + x^2 = 25", T), ("x^2 + y^2 = 25", "x^2 + y^2 = 5", F), ("3x - y = 7", "y = 3x - 7", T),
        ("3x - y = 7", "y = 7 - 3x", F), ("\\frac{x^2}{4} + \\frac{y^2}{9} = 1", "9x^2 + 4y^2 = 36", T),
        ("x + y + z = 1", "2x + 2y + 2z = 2", T), ("x + y + z = 1", "x + y + z = 2", F), ("y = x^2", "x^2 = y", T),
        ("y = x^2", "y = x^3", F),
    ],
    "inequality": [
        ("x \\ge 5", "5 \\le x", T), ("x > 5", "x < 5", F), ("x < 1", "-x > -1", T), ("x \\le 2", "x <= 2", T),
        ("x \\ge 5", "x > 5", F), ("-2 \\le x \\le 7", "x \\in [-2, 7]", T), ("-2 < x < 7", "(-2, 7)", T),
        ("-2 < x < 7", "[-2, 7]", F), ("x > 3", "(3, \\infty)", T), ("x \\le 3", "(-\\infty, 3]", T), ("x \\le 3", "(-\\infty, 3)", F),
        ("x \\neq 3", "x != 3", T), ("2x + 1 > 5", "x > 2", T), ("x^2 < 4", "-2 < x < 2", T), ("x^2 < 4", "x < 2", F),
    ],
    "interval": [
        ("[1, 2)", "[1,2)", T), ("[1, 2)", "(1, 2]", F), ("[1, 2)", "[1, 2]", F), ("(0, \\infty)", "(0, +\\infty)", T),
        ("(0, \\infty)", "[0, \\infty)", F), ("(-\\infty, 0) \\cup (0, \\infty)", "(-\\infty,0)\\cup(0,\\infty)", T),
        ("(-\\infty, 0) \\cup (0, \\infty)", "(0,\\infty)\\cup(-\\infty,0)", T), ("(-\\infty, 0) \\cup (0, \\infty)", "(-\\infty, \\infty)", F),
        ("[\\frac{1}{2}, 3]", "[0.5, 3]", T), ("[-3, 2]", "(-3, 2)", F), ("(-1, 1)", "\\left(-1, 1\\right)", T),
        ("[2, 5]", "[2, 6]", F), ("(-\\infty, -1] \\cup [1, \\infty)", "(-\\infty,-1]\\cup[1,\\infty)", T),
        ("(-\\infty, -1] \\cup [1, \\infty)", "(-\\infty,-1)\\cup(1,\\infty)", F), ("x \\in [0, 1)", "[0, 1)", T),
        ("[0, 1)", "[0, 1]", F),
    ],
    "set": [
        ("\\{1, 2\\}", "\\{2, 1\\}", T), ("\\{1, 2\\}", "\\{1, 3\\}", F), ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}", T),
        ("\\{1, 2\\}", "\\{1, 2, 3\\}", F), ("\\{-2, 2\\}", "\\{2, -2\\}", T), ("\\{\\frac12, 1\\}", "\\{1, 0.5\\}", T),
        ("\\emptyset", "\\varnothing", T), ("\\{1, 2\\}", "(1, 2)", F), ("\\{a, b\\}", "\\{b, a\\}", T),
        ("\\{0\\}", "\\{0, 0\\}", T), ("\\{\\sqrt2, -\\sqrt2\\}", "\\{-\\sqrt{2}, \\sqrt{2}\\}", T), ("\\{3\\}", "\\{-3\\}", F),
    ],
    "multiple_answers": [
        ("1, 2", "2, 1", T), ("1, 2", "1, 3", F), ("-2, 3", "3, -2", T), ("-2, 3", "x = -2, x = 3", T),
        ("-2, 3", "x = 3 \\text{ or } x = -2", T), ("1, 2, 3", "1, 2", F), ("\\pm 2", "2, -2", T), ("\\pm 2", "2", F),
        ("1 \\pm \\sqrt{2}", "1 + \\sqrt2, 1 - \\sqrt2", T), ("1 \\pm \\sqrt{2}", "1 + \\sqrt{2}", F), ("0, 1", "0 \\text{ and } 1", T),
        ("\\frac{1}{2}, -3", "-3, 0.5", T), ("\\frac{1}{2}, -3", "-3, -0.5", F), ("2, 4, 6", "6, 4, 2", T),
        ("7, 8", "7 \\text{ and } 9", F),
    ],
    "tuple": [
        ("(1, 2)", "(1,2)", T), ("(1, 2)", "(2, 1)", F), ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", T),
        ("(3, \\frac{\\pi}{2})", "(3, \\pi)", F), ("(1, -1, 2)", "(1,-1,2)", T), ("(1, -1, 2)", "(1, 1, 2)", F),
        ("(1, 4.5)", "(1, \\frac{9}{2})", T), ("(0, 0)", "(0, 0, 0)", F), ("(p, q) = (3, 2)", "(3, 2)", T),
        ("(2, -3)", "x = 2, y = -3", T), ("\\langle 3, 4 \\rangle", "(3, 4)", T), ("(6, 31, -1)", "(6, 31, 1)", F),
        ("(-\\frac{1}{2}, 3)", "(-0.5, 3)", T), ("(2, 3)", "(3, 2)", F),
    ],
    "matrix": [
        ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}", T),
        ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}", F),
        ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1, 2)", T), ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}", F),
        ("\\begin{pmatrix} \\frac12 & 0 \\\\ 0 & 1 \\end{pmatrix}", "\\begin{pmatrix} 0.5 & 0 \\\\ 0 & 1 \\end{pmatrix}", T),
        ("\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", "\\begin{pmatrix} 1 & 0 & 0 \\\\ 0 & 1 & 0 \\end{pmatrix}", F),
        ("\\begin{pmatrix} 6 & 8 \\\\ 10 & 12 \\end{pmatrix}", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix} + \\begin{pmatrix} 5 & 6 \\\\ 7 & 8 \\end{pmatrix}", T),
        ("\\begin{pmatrix} -1 \\\\ 2 \\\\ 5 \\end{pmatrix}", "\\left(\\begin{array}{c} -1 \\\\ 2 \\\\ 5 \\end{array}\\right)", T),
        ("\\begin{pmatrix} -1 \\\\ 2 \\\\ 5 \\end{pmatrix}", "\\begin{pmatrix} -1 \\\\ 2 \\\\ -5 \\end{pmatrix}", F),
        ("\\begin{pmatrix} 2 & 0 \\\\ 0 & 2 \\end{pmatrix}", "2\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", T),
        ("\\begin{pmatrix} x & 1 \\\\ 0 & x \\end{pmatrix}", "\\begin{pmatrix} x & 1 \\\\ 0 & x \\end{pmatrix}", T),
        ("-2", "\\begin{vmatrix} 1 & 2 \\\\ 3 & 4 \\end{vmatrix}", T),
    ],
    "complex": [
        ("1 + 2i", "2i + 1", T), ("1 + 2i", "1 - 2i", F), ("1 + 2i", "i(2 - i)", T), ("-1", "i^2", T),
        ("2i", "\\sqrt{-4}", T), ("\\frac{3}{4}i", "\\frac34i", T), ("3 - 4i", "3 + 4i", F), ("5", "|3 + 4i|", T),
        ("i", "-i", F), ("-1 + i", "i - 1", T), ("\\frac{1}{2} + \\frac{\\sqrt3}{2}i", "\\frac{1 + i\\sqrt{3}}{2}", T),
        ("1 + i", "1 + j", F),
    ],
    "algebra": [
        ("(a+b)^2", "a^2 + 2ab + b^2", T), ("(a+b)^2", "a^2 + b^2", F), ("x^2 - 1", "(x-1)(x+1)", T),
        ("x^2 - 1", "(x-1)^2", F), ("\\frac{x+2}{7}", "\\frac{x}{7} + \\frac{2}{7}", T), ("2x + 3", "3 + 2x", T),
        ("2x + 3", "2x + 4", F), ("\\tan^2 y + 1", "\\sec^2 y", T), ("2\\sin b \\cos a", "\\sin(a+b) - \\sin(a-b)", T),
        ("\\log_2 8", "3", T), ("\\ln(e^2)", "2", T), ("x^{3/2}", "x\\sqrt{x}", T), ("x^{3/2}", "x^{2/3}", F),
        ("\\frac{1}{x}", "x^{-1}", T), ("3x^2y", "3yx^2", T), ("n(n+1)/2", "\\frac{n^2+n}{2}", T),
        ("n(n+1)/2", "\\frac{n^2-n}{2}", F), ("|x|", "x", F), ("\\sqrt{x^2}", "|x|", T), ("e^{x}e^{y}", "e^{x+y}", T),
    ],
    "radicals_pi": [
        ("2\\sqrt{2}", "\\sqrt{8}", T), ("2\\sqrt{2}", "\\sqrt{6}", F), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt3}", T),
        ("\\sqrt[3]{8}", "2", T), ("3\\sqrt{13}", "\\sqrt{117}", T), ("3\\sqrt{13}", "\\sqrt{39}", F), ("4\\pi", "4 \\pi", T),
        ("4\\pi", "\\pi 4", T), ("4\\pi", "8\\pi", F), ("\\frac{9}{4}\\pi", "\\frac94\\pi", T), ("\\frac{9\\pi}{4}", "2.25\\pi", T),
        ("\\sqrt{2} + \\sqrt{5}", "\\sqrt 2+\\sqrt 5", T), ("\\sqrt{2} + \\sqrt{5}", "\\sqrt{7}", F), ("2\\pi", "6.283185307", T),
        ("\\pi", "3.14", F), ("\\sqrt{3}", "1.73", F), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", T), ("10\\sqrt[3]{2}", "\\sqrt[3]{2000}", T),
    ],
    "scientific": [
        ("3 \\times 10^5", "300000", T), ("3 \\times 10^5", "3 \\times 10^6", F), ("3.54 \\times 10^{-7}", "3.54e-07", T),
        ("1.5 \\times 10^{-3}", "0.0015", T), ("1.5 \\times 10^{-3}", "1.5e-3", T), ("1.5 \\times 10^{-3}", "1.5e3", F),
        ("6.02 \\times 10^{23}", "6.02e23", T), ("2 \\cdot 10^3", "2000", T), ("5 \\times 10^{-2}", "0.5", F),
        ("1.2\\times10^{4}", "12000", T), ("4.5 \\times 10^2", "4500", F),
    ],
    "mixed_number": [
        ("2\\frac{1}{2}", "2.5", T), ("2\\frac{1}{2}", "\\frac{5}{2}", T), ("2\\frac{1}{2}", "1", F), ("3\\frac{3}{4}", "3.75", T),
        ("3\\frac{3}{4}", "3.34", F), ("918\\frac{1}{2}", "918.5", T), ("1 \\frac{1}{3}", "\\frac43", T), ("-1\\frac{1}{2}", "-1.5", T),
        ("-1\\frac{1}{2}", "-0.5", F), ("7 3/4", "7.75", T),
    ],
    "repeating_decimal": [
        ("\\frac{1}{3}", "0.\\overline{3}", T), ("\\frac{1}{6}", "0.1\\overline{6}", T), ("\\frac{1}{7}", "0.\\overline{142857}", T),
        ("\\frac{1}{3}", "0.\\overline{6}", F), ("0.\\overline{45}", "\\frac{5}{11}", T), ("0.\\overline{45}", "\\frac{9}{20}", F),
        ("\\frac{2}{3}", "0.\\overline{6}", T), ("\\frac{1}{11}", "0.\\overline{09}", T), ("\\frac{1}{9}", "0.\\overline{1}", T),
        ("1.\\overline{3}", "\\frac{4}{3}", T), ("\\frac{1}{3}", "0.3", F),
    ],
    "ratio": [
        ("3:4", "6:8", T), ("3:4", "4:3", F), ("1:2:4", "2:4:8", T), ("1:2:4", "1:4:2", F), ("3:4", "\\frac{3}{4}", T),
        ("2:3", "0.75", F), ("5:2", "10:4", T), ("7:32", "V_1 : V_2 = 7:32", T), ("12:00", "1:00", F), ("12:00", "12:00", T),
        ("2:30 \\text{ PM}", "14:30", T),
    ],
    "base": [
        ("1011_2", "1011_{2}", T), ("12_3", "12_5", F), ("204_5", "204", T), ("204_5", "54", F), ("4210_7", "4210_{7}", T),
        ("101_2", "110_2", F), ("1112112_3", "1112112_{3}", T), ("FF_{16}", "FF_{16}", T),
    ],
    "infinity": [
        ("\\infty", "+\\infty", T), ("\\infty", "-\\infty", F), ("-\\infty", "-\\infty", T), ("(1, \\infty)", "(1, +\\infty)", T),
        ("\\infty", "\\infty", T), ("\\infty", "100000", F), ("(-\\infty, 2]", "(-\\infty, 2)", F),
    ],
    "latex_format": [
        ("\\frac{1}{2}", "\\left( \\frac{1}{2} \\right)", T), ("12", "\\boxed{12}", T), ("12", "$12$", T), ("12", "\\mathbf{12}", T),
        ("\\frac{3}{5}", "\\displaystyle\\frac{3}{5}", T), ("\\frac{3}{5}", "\\cfrac{3}{5}", T), ("10", "10.", T),
        ("\\sqrt{3}", "\\sqrt3", T), ("x + 1", "x+1", T), ("5", "\\text{5}", T), ("5", "\\textbf{6}", F),
        ("2\\cdot 3", "6", T), ("2\\times 3", "5", F), ("-\\frac{1}{2}", "- \\frac {1} {2}", T),
    ],
    "near_miss": [
        ("\\frac{1}{2004!}", "\\frac{1}{2006!}", F), ("123456789", "123456788", F), ("1.0001", "1", F), ("10^{-8}", "0", F),
        ("1", "0.9999", F), ("x^2+2x+1", "x^2+2x-1", F), ("\\sqrt{2}", "\\sqrt{3}", F), ("0.12", "0.21", F),
        ("\\pi/2", "\\pi/3", F), ("2^{10}", "1000", F), ("e^2", "2e", F), ("\\frac{\\pi}{2}", "1.57", F),
        ("1000", "1000.5", F), ("3x", "x^3", F), ("(1,2)", "[1,2]", F), ("5", "-5", F), ("\\log 2", "\\log 3", F),
        ("0.5", "0.05", F), ("1, 2, 3", "1, 2, 4", F), ("2", "\\frac{1+\\sqrt{5}}{2}", F), ("4\\sqrt{2}", "4", F),
        ("x + 2n + 1", "x + 1", F), ("\\frac{1}{3}", "0.3333", F), ("15", "1.5", F), ("9", "\\pm 3", F),
    ],
    "gsm8k": [
        ("72", "72", T), ("72", "71", F), ("5", "5.00", T), ("1500", "1,500", T), ("18", "\\$18", T), ("18", "18 dollars", T),
        ("64", "64 students", T), ("64", "46", F), ("3", "3 hours", T), ("3", "30", F), ("20", "20%", T), ("7", "7.5", F),
    ],
    # decimals for an exact value (policy rounding="irrational"): accepted only for a provably
    # irrational reference, with >= 4 significant digits, each shown digit correct (rounded or
    # truncated); a rational reference has an exact form, so 0.3333 is not 1/3
    "approximation": [
        ("40\\pi", "125.663", T), ("40\\pi", "125.664", T), ("40\\pi", "125.66", T), ("\\sqrt{3}", "1.732", T),
        ("\\sqrt{2}", "1.4142", T), ("\\pi", "3.1416", T), ("\\pi", "3.1415", T), ("e", "2.718", T),
        ("\\ln 2", "0.6931", T), ("\\frac{\\pi}{6}", "0.5236", T), ("30^\\circ", "0.5236", T), ("-\\sqrt{3}", "-1.732", T),
        ("(\\sqrt{2}, 1)", "(1.414, 1)", T), ("\\frac{1}{3}, \\sqrt{3}", "1/3, 1.732", T), ("\\sqrt{2}", "1.41421356", T),
        ("\\pi", "3.14", F), ("\\sqrt{3}", "1.73", F), ("\\sqrt{3}", "1.733", F), ("\\pi", "3.143", F), ("\\pi", "31.416", F),
        ("-\\sqrt{3}", "1.732", F), ("\\sqrt{3}", "-1.732", F), ("40\\pi", "125.7", T), ("40\\pi", "125.5", F), ("40\\pi", "125", F),
        ("\\frac{1}{3}", "0.3333", F), ("\\frac{2}{3}", "0.6667", F), ("\\frac{1}{3}", "0.333", F), ("\\frac{5}{7}", "0.7143", F),
        ("3.1416", "\\pi", F), ("2.718", "e", F), ("\\sqrt{2}", "2 \\cdot 0.7071", F), ("\\frac{1}{3}, \\sqrt{3}", "0.3333, 1.732", F),
    ],
    # what juxtaposition may and may not mean: a number written right after a digit, a bracket,
    # "!" or "%" never multiplies (garbled digits must not earn reward); after a letter, a power
    # or in front of a letter / root / bracket it does; "2 1/2" is a mixed number
    "juxtaposition": [
        ("9", "1 9", F), ("19", "1 9", F), ("1", "1 9", F), ("60", "12 5", F), ("125", "12 5", F), ("12", "3 4", F),
        ("34", "3 4", F), ("6", "1 2 3", F), ("-9", "-1 9", F), ("9", "1\\ 9", F), ("9", "1\\,9", F), ("9", "1~9", F),
        ("9", "1{9}", F), ("9", "{1}{9}", F), ("19", "1\n9", F), ("9", "1\n9", F), ("12", "3!2", F), ("6", "(2) 3", F),
        ("6", "(2)\\,3", F), ("3", "1.5 2", F), ("0.25", "0.5 0.5", F), ("81", "1 9^2", F), ("0.36", "1.2.3", F),
        ("3\\sqrt{2}", "\\sqrt{2} 3", F), ("\\frac{3}{2}", "\\frac{1}{2} 3", F), ("\\frac{3}{2}", "\\frac123", F),
        ("1", "\\frac{1 9}{9}", F), ("1234", "12 34", F), ("12", "1,2", F), ("123", "12,3", F), ("1234", "12,34", F),
        ("42", "14 apples 3", F), ("3", "14 apples 3", F), ("14", "14 apples 3", F), ("2x", "x2", F),
        ("1", "2 1/2", F), ("4", "2 4/2", F), ("2.5", "2\n1/2", F), ("60^\\circ", "30^\\circ 2", F),
        ("2x", "2 x", T), ("2\\pi", "2 \\pi", T), ("3\\sqrt{2}", "3 \\sqrt{2}", T), ("2x + 2", "2(x+1)", T),
        ("xy", "x y", T), ("2x", "x 2", T), ("144", "2^4 3^2", T), ("6", "(2)(3)", T), ("6", "2 (3)", T),
        ("2\\sin x", "2 \\sin x", T), ("12345", "12 345", T), ("1000000", "1 000 000", T), ("2.5", "2 1/2", T),
        ("-2.5", "-2 1/2", T), ("\\frac{11}{4}", "2 3/4", T), ("(2.5, 3)", "(2 1/2, 3)", T), ("0.5", "3 - 2 1/2", T),
        ("2.5", "2 1/2 \\text{ cups}", T), ("\\frac{5}{2}", "2\\frac{1}{2}", T), ("1, 9", "1 \\text{ and } 9", T),
    ],
}


# second batch: harder realistic forms, appended per category
MORE: dict[str, list[tuple[str, str, bool]]] = {
    "integer": [("17", "\\textbf{17}", T), ("17", "seventeen", F), ("-3", "-(3)", T), ("9", "3^2", T), ("9", "2^3", F),
                ("1", "0.99", F), ("64", "4^3", T), ("6", "3!", T)],
    "fraction": [("\\frac{14}{3}", "4\\frac{2}{3}", T), ("\\frac{3}{56}", "\\frac{6}{112}", T), ("\\frac{3}{56}", "\\frac{56}{3}", F),
                 ("\\frac{1}{4}", "1/4", T), ("\\frac{1}{4}", "1/5", F), ("-\\frac{1}{2}", "-0.5", T)],
    "decimal": [("16386.20", "16386.2", T), ("16386.20", "16386.16", F), ("0.0625", "\\frac{1}{16}", T), ("2.5", "\\frac{5}{2}", T),
                ("0.30000000000000004", "0.3", T)],
    "assignment": [("m = 2", "m=2", T), ("\\frac{NO}{BO} = \\frac{1}{\\sqrt{6}}", "\\frac{\\sqrt6}{6}", T), ("b = 12", "c = 12", T),
                   ("|AB| = 5", "5", T), ("a_{37} = 19", "19", T), ("7 = 11a + c", "11a + c", F)],
    "equation": [("y = -x + 4", "x + y = 4", T), ("y = -x + 4", "x - y = 4", F), ("x^2/4 + y^2/3 = 1", "x^2/16 + y^2/12 = 1/4", T),
                 ("34x+45y-20z+100=0", "-34x-45y+20z-100=0", T), ("\\sin x = \\frac{1}{2}", "\\cos x = \\frac{1}{2}", F)],
    "interval": [("[-4, 0]", "[-4,0]", T), ("(2, 12) \\cup (12, 102)", "(2,12) \\cup (12,102)", T), ("(2, 12) \\cup (12, 102)", "(2, 102)", F),
                 ("[-1, -\\frac{1}{2}) \\cup (-\\frac{1}{2}, 0)", "[-1, -0.5) \\cup (-0.5, 0)", T), ("(-6, 10)", "x \\in (-6, 10)", T),
                 ("(-6, 10)", "(-6, 10]", F)],
    "multiple_answers": [("-12, -11, -10", "\\{-10, -11, -12\\}", T), ("21, 16, 11", "11, 16, 21", T), ("21, 16, 11", "21, 16", F),
                         ("1, 3", "3 \\text{ and } 1", T), ("2, 3, 5, 7", "2, 3, 5, 7, 9", F), ("\\pm 2021", "\\{-2021, 2021\\}", T)],
    "tuple": [("(5, 8), (8, 5)", "(8, 5), (5, 8)", T), ("(5, 8), (8, 5)", "(5, 8)", F), ("(p,q,r)=(3,2,7)", "(3,2,7)", T),
              ("(1, \\frac{9}{2})", "(1, 4.5)", T), ("(0, 3)", "(3, 0)", F)],
    "algebra": [("\\frac{\\pi r}{h+r}", "\\frac{r\\pi}{r+h}", T), ("\\frac{\\pi r}{h+r}", "\\frac{\\pi h}{h+r}", F),
                ("11z^7(5+11z^7)", "11z^7(11z^7+5)", T), ("(2x+3)(2x-1)(2x+1)", "(2x-1)(2x+1)(2x+3)", T),
                ("2^6 3^5 5^4", "2^6 \\cdot 3^5 \\cdot 5^4", T), ("\\frac{8-7x}{6}", "4/3 - 7x/6", T), ("\\frac{8-7x}{6}", "4/3 + 7x/6", F),
                ("x^2+2x+1", "x^2 + 2*x + 1", T), ("(r+5)^2", "(r+5)(r+5)", T)],
    "radicals_pi": [("\\frac{5\\sqrt{42}}{27}", "\\frac{5}{27}\\sqrt{42}", T), ("\\frac{4\\sqrt{5}}{5}", "\\frac{4}{\\sqrt5}", T),
                    ("\\frac{4\\sqrt{5}}{5}", "\\frac{5}{\\sqrt4}", F), ("40\\pi", "125.663706", T), ("40\\pi", "125.67", F)],
    "units": [("125\\text{ miles}", "125", T), ("15\\mbox{ cm}^2", "15", T), ("0.06 \\text{ yuan}", "0.06", T), ("8\\text{ feet}", "96\\text{ inches}", T),
              ("8\\text{ feet}", "8\\text{ inches}", F)],
    "text": [("\\text{The midpoints form a regular hexagon}", "\\text{The midpoints form a regular hexagon}", T),
             ("\\text{Alice}", "\\text{Bob}", F), ("\\text{(iii)}", "\\text{(ii)}", F)],
    "gsm8k": [("150", "150 cookies", T), ("150", "\\$150.00", T), ("2.5", "2.50", T), ("35", "53", F), ("12", "12 apples", T),
              ("12", "twelve", F), ("1080", "1,080", T), ("45", "45 minutes", T)],
    "complex": [("3 + 4i", "4i + 3", T), ("\\frac{1}{2} - \\frac{1}{2}i", "\\frac{1 - i}{2}", T), ("2 + i", "2 - i", F)],
    "near_miss": [("12_3", "12_5", F), ("1:4:2", "1:2:4", F), ("5\\text{ kg}", "5\\text{ g}", F), ("(1, 2)", "\\{1, 2\\}", F),
                  ("[2, 3]", "(2, 3)", F), ("2\\sqrt{3}", "3\\sqrt{2}", F), ("x > 2", "x \\ge 2", F), ("\\frac{3}{8}", "0.37", F)],
}
for _cat, _extra in MORE.items():
    CASES[_cat] = CASES[_cat] + _extra

TEMPLATES = [
    "We set up the equation from the problem statement and simplify step by step.\n"
    "After combining like terms we obtain the result.\nTherefore, the final answer is $\\boxed{{{a}}}$.",
    "Let me work through this carefully.\nFirst, compute the intermediate quantity.\nThen substitute back.\n"
    "Answer: {a}",
    "Natalia computes the total in two steps and adds them up.\nSo the total is computed below.\n#### {a}",
    "Using the given conditions, we find that the answer is ${a}$.",
    "**Step 1.** Write down what is known.\n**Step 2.** Solve.\n\nThe final answer is $\\boxed{{{a}}}$. I hope it is correct.",
    "Solving gives the value we need.\n\\[\n\\boxed{{{a}}}\n\\]",
]


def build() -> list[dict]:
    rows = []
    k = 0
    for category, cases in CASES.items():
        for gold, answer, equal in cases:
            template = TEMPLATES[k % len(TEMPLATES)]
            if template.startswith("Natalia") and not _gsm_friendly(answer):
                template = TEMPLATES[0]
            if "$" in template and "$" in answer:
                answer_in = answer.strip("$")
            else:
                answer_in = answer
            rows.append({"category": category, "gold": gold, "answer": answer,
                         "completion": template.format(a=answer_in), "equal": equal})
            k += 1
    return rows


def _gsm_friendly(answer: str) -> bool:
    # "#### ..." lines carry plain answers in GSM8K, never LaTeX structures
    return "\\" not in answer and "$" not in answer


def main() -> None:
    rows = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"wrote {len(rows)} cases in {len(CASES)} categories to {OUT}")


if __name__ == "__main__":
    main()
