"""Regenerate ``support_tickets.csv``: short customer-support messages in 5 classes (CC0, ours).

Deterministic (``random.Random(0)``): ``python data/labelled/make_data.py`` rewrites the same file.
Each message = opener + one class-specific issue (several paraphrases, slots filled at random)
+ often a *distractor* clause that borrows another class's words ("refund", "password", "app",
"package") without changing the label, + a closer. So single keywords are misleading and the
label depends on word combinations, e.g. "refund the second charge" (billing) vs "refund once you
get it back" (returns), "can't log in, forgot my password" (account) vs "can't log in, the app
crashes" (technical). About 15% of messages are deliberately hard (a weak cue plus, often, a
distractor).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

ROWS_PER_CLASS = 120
HARD_SHARE = 0.15  # share of messages with only a weak cue
DISTRACTOR_SHARE = 0.7  # share of messages with a misleading clause
OUT = Path(__file__).with_name("support_tickets.csv")

ITEMS = ["order", "jacket", "headphones", "coffee machine", "phone case", "desk lamp", "backpack",
         "running shoes", "blender", "keyboard", "gift card", "subscription box"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the weekend", "last week", "yesterday"]
AMOUNTS = ["$12.99", "$45", "$89.50", "$19", "$230", "$7.49", "$64"]

ISSUES = {
    "billing": [
        "I was charged twice for my {item}",
        "my card was billed {amount} but the price said less",
        "there is a charge of {amount} on my statement that I don't recognise",
        "the invoice for my {item} shows the wrong amount",
        "my subscription fee went up without any notice",
        "please refund the second charge for the same {item}",
        "the discount code was not applied and I paid full price",
        "I cancelled the plan but you still took {amount} from my card",
        "why was I billed {amount} on {day}",
        "the payment went through twice even though the app showed an error",
        "I need a corrected receipt, the tax on my {item} is wrong",
        "you charged my old card instead of the new one",
        "the total at checkout was higher than the price of the {item}",
        "I was promised a refund of the extra fee but my balance still shows it",
    ],
    "delivery": [
        "my {item} still hasn't arrived",
        "the tracking for my {item} has not moved since {day}",
        "the courier says the package was delivered but it is not here",
        "my parcel went to the wrong address",
        "the {item} was supposed to arrive {day} and it is late",
        "the box with my {item} arrived crushed and soaking wet",
        "can you tell me when the {item} will be shipped",
        "the driver left my package outside in the rain",
        "only half of my order was in the package",
        "the delivery slot I picked was ignored",
        "I paid for express shipping and the {item} took two weeks",
        "the package is stuck at the depot according to tracking",
        "nobody rang the bell, the card says I missed the delivery",
        "the {item} arrived but the rest of my order is missing",
    ],
    "returns": [
        "I want to send back the {item}, it does not fit",
        "how do I return the {item} I bought {day}",
        "the return label you emailed does not print",
        "I shipped the {item} back two weeks ago and have no refund yet",
        "can I exchange the {item} for a different size",
        "the {item} is not what I expected, I would like to return it",
        "please refund me once you get the {item} back",
        "is the return free or do I pay the postage",
        "I dropped the parcel at the return point, when is my money back",
        "the {item} stopped working after a week, can I swap it for a new one",
        "the return window closed yesterday but I was travelling",
        "I received a gift {item} and want store credit instead",
        "do I need the original box to return the {item}",
        "you sent the wrong colour of {item}, I want to exchange it",
    ],
    "account": [
        "I forgot my password and the reset email never comes",
        "how do I change the email address on my account",
        "please close my account and delete my data",
        "someone else logged into my account from another country",
        "I can't log in because my account is locked",
        "I want to update my phone number for two-factor codes",
        "my username shows somebody else's name",
        "I created two accounts by mistake, can you merge them",
        "how do I unsubscribe from your marketing emails",
        "the verification code for my account expired",
        "I want to add my partner as a second user on the account",
        "my loyalty points disappeared from my profile",
        "I can't log in, it says my email is not registered",
        "I need to change the name on my profile after getting married",
    ],
    "technical": [
        "the app crashes every time I open my {item} order",
        "the website shows error 500 at checkout",
        "I can't log in because the app freezes on the loading screen",
        "the page with my basket never finishes loading",
        "the search bar returns nothing for {item}",
        "push notifications stopped working after the update",
        "the app keeps logging me out every few minutes",
        "pictures of the {item} do not load on my phone",
        "the button to pay is greyed out on the website",
        "the app uses all my battery since {day}",
        "the password field does not accept paste on the mobile site",
        "the tracking page is blank in my browser",
        "after the update the app shows a white screen",
        "the chat window closes as soon as I type",
    ],
}

# clauses that borrow another class's vocabulary but do not change the label
DISTRACTORS = {
    "billing": ["the package arrived fine, but", "I don't want to return anything,", "I logged in to check and",
                "the delivery was on time, but", "the app works fine, but", "I'm keeping the {item}, but",
                "my account shows the order as delivered and"],
    "delivery": ["I already paid {amount},", "my account looks fine, but", "I don't want a refund yet,",
                 "the app says it is on the way but", "I was charged on {day} and", "I'm not returning anything,",
                 "I logged into my account and"],
    "returns": ["the delivery was quick, but", "the charge on my card was correct, but",
                "I logged into my account and", "the package arrived on {day} and", "I paid {amount} and",
                "the app shows the order as delivered, but"],
    "account": ["my order arrived fine, but", "the app itself works,", "I'm not asking about a refund,",
                "I paid for my last order and now", "my package was delivered, but", "my card is fine, but",
                "I wanted to return an {item} and"],
    "technical": ["I'm not asking about my password,", "the order itself is fine, but",
                  "my card was charged correctly, but", "the package arrived, but", "I wanted to check my refund but",
                  "my account is fine, but", "I tried to return the {item} but"],
}

OPENERS = ["", "", "Hi,", "Hello,", "Hi there,", "Good morning,", "Quick question:", "Help!", "Hey,",
           "Dear support,", "Sorry to bother you,"]
CLOSERS = ["", "", "", "Thanks.", "Please help.", "Any ideas?", "This is really frustrating.",
           "Can you sort this out?", "Thank you in advance.", "What should I do?"]
# hard rows: a weak, shared cue only
HARD = {
    "billing": ["the amount for my {item} looks wrong", "something is off with what I paid for the {item}",
                "I think you took too much", "the numbers on my statement don't add up"],
    "delivery": ["where is my {item}", "still waiting for the {item}", "it should have been here {day}",
                 "the {item} never showed up"],
    "returns": ["I don't want the {item} any more", "the {item} has to go back", "I changed my mind about the {item}",
                "the {item} is the wrong size"],
    "account": ["my details are wrong", "I can't get in anymore", "I need to update my details",
                "it doesn't recognise me"],
    "technical": ["nothing works on my phone", "it just spins forever", "the screen goes blank",
                  "it broke after the update"],
}


def message(rng: random.Random, label: str) -> str:
    def fill(template: str) -> str:
        return template.format(item=rng.choice(ITEMS), day=rng.choice(DAYS), amount=rng.choice(AMOUNTS))

    core = fill(rng.choice(HARD[label] if rng.random() < HARD_SHARE else ISSUES[label]))
    parts = [rng.choice(OPENERS)]
    if rng.random() < DISTRACTOR_SHARE:
        parts.append(fill(rng.choice(DISTRACTORS[label])))
    parts.append(core + rng.choice([".", ".", "!", "?", ""]))
    parts.append(rng.choice(CLOSERS))
    text = " ".join(p for p in parts if p)
    if rng.random() < 0.3:
        text = text.lower()
    return text[0].upper() + text[1:]


def main() -> None:
    rng = random.Random(0)
    rows, seen = [], set()
    for label in ISSUES:
        while sum(r[1] == label for r in rows) < ROWS_PER_CLASS:
            text = message(rng, label)
            if text not in seen:
                seen.add(text)
                rows.append((text, label))
    rng.shuffle(rows)
    with OUT.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


if __name__ == "__main__":
    main()
