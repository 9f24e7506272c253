"""Builds support.json, the demo's customer-support dataset (run once; the output is committed).

Every reply follows one house style so a tiny model can visibly learn it: thank the customer,
name the product back, give one or two concrete steps, ask one question, sign off as "— Sam".
Products and problems are invented; there is no real personal data. Usage:
    python -m gpudoctor.demo.build_support_data > gpudoctor/demo/support.json
"""

from __future__ import annotations

import json
import random
import sys

PRODUCTS = [
    "the Aurora Desk Lamp", "the Breeze Air Purifier", "the Cobalt Wireless Mouse", "the Drift Bluetooth Speaker",
    "the Ember Coffee Grinder", "the Fjord Water Bottle", "the Glide Electric Toothbrush", "the Harbor Smart Plug",
    "the Iris Webcam", "the Juniper Fitness Band", "the Kestrel Headphones", "the Lumen Phone Charger",
    "the Maple Kitchen Scale", "the Nimbus Router", "the Orbit Robot Vacuum", "the Pebble Smart Thermostat",
]

# (customer's words with {p} for the product, the steps Sam suggests, the question Sam asks)
PROBLEMS = [
    ("I'm having trouble getting {p} to work properly.",
     "please unplug it for ten seconds and plug it back in",
     "Can you tell me more about what isn't working?"),
    ("{p} won't turn on at all.",
     "please try a different power outlet and hold the power button for five seconds",
     "Does any light come on when you press the button?"),
    ("My {q} stopped charging overnight.",
     "please try another cable and clean the charging port gently with a dry brush",
     "Which charger are you using right now?"),
    ("The app can't find {p}.",
     "please turn Bluetooth off and on again and keep your phone close to the device",
     "Which phone model and app version do you have?"),
    ("{p} keeps disconnecting from Wi-Fi.",
     "please restart your router and move the device a little closer to it",
     "How far is the device from your router?"),
    ("I was charged twice for {p}.",
     "I have flagged the second charge for our billing team, and it will be refunded in three to five days",
     "Could you send me the last four digits of the card you used?"),
    ("{p} arrived damaged.",
     "I have started a free replacement for you, and you do not need to send the damaged one back",
     "Could you send me a photo of the damage for our records?"),
    ("My order for {p} hasn't arrived yet.",
     "I have checked with our courier, and your parcel is on its way",
     "Could you confirm the delivery address on your order?"),
    ("How do I reset {p} to factory settings?",
     "please hold the reset button for ten seconds until the light blinks twice",
     "Would you like me to send you the full reset guide?"),
    ("{p} is making a strange noise.",
     "please switch it off, check that nothing is stuck inside, and let it rest for a few minutes",
     "Is the noise a click, a buzz or a rattle?"),
    ("The battery on {p} drains very fast.",
     "please update the firmware in the app and turn off features you do not use",
     "About how many hours does a full charge last?"),
    ("I want to return {p}.",
     "I have opened a return for you, and a prepaid label is on its way to your email",
     "May I ask what did not work for you, so we can improve?"),
    ("{p} shows a red blinking light.",
     "please unplug it, wait one minute, and plug it back in",
     "Does the light keep blinking after the restart?"),
    ("The buttons on {p} don't respond.",
     "please check that the lock switch is off and clean around the buttons with a soft cloth",
     "Do all the buttons fail, or only some of them?"),
    ("I can't update the firmware on {p}.",
     "please make sure the device is charged above half and keep the app open during the update",
     "What message do you see when the update stops?"),
    ("{p} gets very hot when I use it.",
     "please stop using it for now and keep it in a cool, open place",
     "How long had it been running when it got hot?"),
]

OPENINGS = [
    "Thanks for reaching out, and I'm sorry {p} is giving you trouble.",
    "Thank you for writing to us, and I'm sorry about the trouble with {p}.",
    "Thanks for getting in touch, and I'm sorry {p} isn't behaving.",
]
CLOSING = "I'm here to help until it's sorted. — Sam"
SYSTEM = ""


def _short(product: str) -> str:
    return product.removeprefix("the ")


def build(seed: int = 7, count: int = 160) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pairs = [(p, prob) for p in PRODUCTS for prob in PROBLEMS]
    rng.shuffle(pairs)
    records = []
    for product, (ask, steps, question) in pairs[:count]:
        text = ask.format(p=product, q=_short(product))
        instruction = text[0].upper() + text[1:]
        opening = rng.choice(OPENINGS).format(p=product)
        reply = f"{opening} To start, {steps}. {question} {CLOSING}"
        records.append({"instruction": instruction, "input": "", "output": reply})
    return records


if __name__ == "__main__":
    json.dump(build(), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
