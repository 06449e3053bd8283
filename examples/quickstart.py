"""A short tour of the SDK. Run it with `make demo`, or against any server with
INSTANT_APP_ID, INSTANT_APP_ADMIN_TOKEN and INSTANT_API_URI set."""

from instantdb import Instant, id

db = Instant()  # INSTANT_APP_ID, INSTANT_APP_ADMIN_TOKEN, INSTANT_API_URI

goal, run, swim = id(), id(), id()
db.transact(
    [
        db.tx.goals[goal].update({"title": "Get fit"}),
        db.tx.todos[run].update({"title": "Run 5k", "done": True}),
        db.tx.todos[swim].update({"title": "Swim 1k", "done": False}),
        db.tx.goals[goal].link({"todos": [run, swim]}),
    ]
)

# Nested: the goal with its linked todos.
found = db.query({"goals": {"$": {"where": {"id": goal}}, "todos": {}}})["goals"][0]
print(found["title"], "->", sorted(todo["title"] for todo in found["todos"]))

# A where filter through the link: this goal's open todos.
open_todos = db.query({"todos": {"$": {"where": {"goals.id": goal, "done": False}}}})
print("open:", [todo["title"] for todo in open_todos["todos"]])

# As a guest, under a rule that shows only finished todos.
rules = {"todos": {"allow": {"view": "data.done == true"}}}
guest = db.as_user(guest=True).debug_query(
    {"todos": {"$": {"where": {"goals.id": goal}}}}, rules=rules
)
print("a guest sees:", [todo["title"] for todo in guest["result"]["todos"]])
