"""Short generated stories: the "ordinary text" the built-in tiny Pythia learns in general.

Every story has a cast (a hero, a friend, a neighbour), an object, a pet and two places,
drawn at random, and tells a few sentences about them from a pool of templates in which the
cast and the object come back again and again. So predicting a story's next word takes two
things a language model has to learn, not memorize: the grammar of the templates, and
copying names, pronouns and the object from earlier in the story. Every ending names
someone or something from the story in its last word, so the last word cannot be guessed
from the last sentence alone (the idea of LAMBADA).

`story(rng)` returns (sentences, last_word); the same seed gives the same stories.
"""

HEROES = [
    ("Anna", "she"), ("Ben", "he"), ("Clara", "she"), ("David", "he"), ("Emma", "she"),
    ("Felix", "he"), ("Grace", "she"), ("Henry", "he"), ("Ida", "she"), ("Jack", "he"),
    ("Kate", "she"), ("Leo", "he"), ("Mia", "she"), ("Noah", "he"), ("Olivia", "she"),
    ("Peter", "he"), ("Rosa", "she"), ("Sam", "he"), ("Tara", "she"), ("Victor", "he"),
    ("Wendy", "she"), ("Adam", "he"), ("Bella", "she"), ("Carl", "he"), ("Daisy", "she"),
    ("Eric", "he"), ("Fiona", "she"), ("George", "he"), ("Hannah", "she"), ("Ivan", "he"),
    ("Julia", "she"), ("Karl", "he"), ("Lucy", "she"), ("Max", "he"), ("Nora", "she"),
    ("Oscar", "he"), ("Paula", "she"), ("Ralph", "he"), ("Sara", "she"), ("Tom", "he"),
]
PRONOUNS = {"she": ("she", "her", "her"), "he": ("he", "him", "his")}   # subject, object, possessive
PETS = ["dog", "cat", "goat", "parrot", "rabbit", "pony", "duck", "hamster", "puppy", "kitten"]
ADJECTIVES = ["red", "blue", "green", "yellow", "old", "small", "shiny", "wooden", "heavy",
              "broken", "silver", "striped"]
OBJECTS = ["kite", "key", "lamp", "box", "map", "ball", "hat", "book", "bell", "basket", "drum",
           "coin", "boat", "clock", "ring", "shell", "cup", "flute", "sled", "umbrella",
           "wagon", "whistle", "jar", "scarf"]
PLACES = ["market", "harbour", "mill", "forest", "bakery", "river", "station", "hill", "farm",
          "school", "garden", "beach", "bridge", "library", "castle", "lake", "meadow", "church"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEATHER = ["sunny", "rainy", "windy", "cold", "warm", "foggy", "quiet", "bright"]
FOODS = ["apples", "bread", "soup", "cheese", "pears", "cake", "plums", "honey", "nuts", "pie"]
FEELINGS = ["happy", "proud", "surprised", "tired", "curious", "worried", "glad", "excited"]
FOUND_AT = ["under a tree", "behind the shed", "in the grass", "near the gate", "on the stairs",
            "inside an old trunk", "at the bottom of a drawer", "beside the path"]

OPENINGS = [
    "{H} lived with {hs_pos} {pet} in a small house near the {place}.",
    "Once there was a child called {H} who lived close to the {place}.",
    "{H} and {F} were good friends, and they both lived near the {place}.",
    "Every summer {H} stayed with {hs_pos} aunt in a village by the {place}.",
]
FINDINGS = [
    "One {weather} {day}, {H} found a {adj} {obj} {found_at}.",
    "On {day} {H}'s grandmother gave {hs_obj} a {adj} {obj} as a present.",
    "One {weather} morning {H} saw a {adj} {obj} in the window of a shop and bought it.",
]
MIDDLES = [
    "{Hs} showed the {obj} to {F}, who said it looked very {adj2}.",
    "{F} wanted to hold the {obj}, so {H} gave it to {fs_obj} for a while.",
    "They carried the {obj} to the {place2} and ate some {food} there.",
    "{Hs_pos} {pet} ran after {hs_obj} all the way to the {place2}.",
    "On the way they met {N}, who was selling {food} at the {place2}.",
    "{N} asked if {ns} could borrow the {obj}, but {H} said no.",
    "{F} felt {feeling} and asked where the {obj} had come from.",
    "{H} told {F} that {hs} would keep the {obj} safe.",
    "When it got dark, {H} and {F} walked back from the {place2} together.",
    "{F} laughed when the {pet} tried to eat the {obj}.",
    "{H} was {feeling}, because nobody else had a {obj} like that.",
    "The next day {F} came to the {place} to see the {obj} again.",
]
# Each ending names someone or something from the story in its last word.
ENDINGS = [
    ("In the evening {H} gave the {obj} to {F}.", "F"),
    ("When the sun went down, {F} walked home with {H}.", "H"),
    ("Before bed, {H} put the {obj} next to {hs_pos} {pet}.", "pet"),
    ("Years later, {H} still remembered the day {hs} found the {obj}.", "obj"),
    ("The next week {H} and {F} went back to the {place2}.", "place2"),
    ("{N} never saw the {obj} again, but {ns} often thought of {H}.", "H"),
    ("At last {F} said thank you and gave the {obj} back to {H}.", "H"),
    ("From that day on, {H} took the {obj} everywhere with {hs_pos} {pet}.", "pet"),
]


def cast(rng):
    """The names and words of one story."""
    (h, hp), (f, fp), (n, np_) = rng.sample(HEROES, 3)
    place, place2 = rng.sample(PLACES, 2)
    adj, adj2 = rng.sample(ADJECTIVES, 2)
    hs, ho, hpos = PRONOUNS[hp]
    fs, fo, _ = PRONOUNS[fp]
    ns, _, _ = PRONOUNS[np_]
    return {
        "H": h, "F": f, "N": n, "hs": hs, "hs_obj": ho, "hs_pos": hpos, "Hs": hs.capitalize(),
        "Hs_pos": hpos.capitalize(), "fs_obj": fo, "ns": ns,
        "pet": rng.choice(PETS), "obj": rng.choice(OBJECTS), "adj": adj, "adj2": adj2,
        "place": place, "place2": place2, "day": rng.choice(DAYS),
        "weather": rng.choice(WEATHER), "food": rng.choice(FOODS),
        "feeling": rng.choice(FEELINGS), "found_at": rng.choice(FOUND_AT),
    }


def story(rng):
    """(sentences, last word) of one story: an opening, a finding, 3 to 5 middle sentences
    in random order, and an ending whose last word the story has already named."""
    c = cast(rng)
    middle = rng.sample(MIDDLES, rng.randint(3, 5))
    body = [s.format(**c) for s in [rng.choice(OPENINGS), rng.choice(FINDINGS), *middle]]
    words = set(" ".join(body).replace(".", " ").replace(",", " ").split())
    ending, last = rng.choice([(e, k) for e, k in ENDINGS if c[k] in words])
    return body + [ending.format(**c)], c[last]
