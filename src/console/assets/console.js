// swipebot console: label mode's keyboard. Loaded from /assets/console.js (the Content-Security-Policy
// allows no inline script). Labels of the current profile are kept here until the profile is done,
// then sent in one POST that the console syncs to labels.jsonl before it answers.
"use strict";

(function () {
  const main = document.querySelector("main.label[data-profile-id]");
  if (!main) {
    return;
  }
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const profileId = main.dataset.profileId;
  const prev = main.dataset.prev;
  const status = document.getElementById("status");
  // Only recorded photos the bot could score are offered (the others have no image to judge, or one
  // that `train` could not read either).
  const photos = Array.from(main.querySelectorAll("figure.photo")).filter(
    (f) => f.querySelector("img") && f.dataset.score !== ""
  );
  photos.forEach((f) => f.classList.add("labellable"));
  // Labels given on this page, in order: [{photo, label, figure}].
  const given = [];
  let current = 0;
  let busy = false;

  function show() {
    photos.forEach((f, i) => f.classList.toggle("current", i === current));
    const done = given.length;
    status.textContent = photos.length === 0
      ? "No recorded photo here: Enter goes to the next profile."
      : `photo ${Math.min(current + 1, photos.length)} of ${photos.length}; ${done} label(s) not saved yet`;
  }

  function mark(figure, label) {
    figure.dataset.label = label || "";
    figure.classList.remove("labelled-like", "labelled-nope");
    if (label) {
      figure.classList.add("labelled-" + label);
    }
  }

  function label(value) {
    if (current >= photos.length) {
      return;
    }
    const figure = photos[current];
    given.push({ photo: figure.dataset.photo, label: value, figure, before: figure.dataset.label });
    mark(figure, value);
    current += 1;
    if (current >= photos.length) {
      save();
    } else {
      show();
    }
  }

  function labelAll(value) {
    while (current < photos.length) {
      const figure = photos[current];
      given.push({ photo: figure.dataset.photo, label: value, figure, before: figure.dataset.label });
      mark(figure, value);
      current += 1;
    }
    save();
  }

  function undo() {
    const last = given.pop();
    if (last) {
      mark(last.figure, last.before);
      current = photos.indexOf(last.figure);
      show();
    } else if (prev) {
      // Nothing on this page to take back: go back to the profile before, whose labels a new
      // label replaces (the last label of a photo wins).
      window.location.href = "/label?id=" + encodeURIComponent(prev);
    }
  }

  async function save() {
    if (busy) {
      return;
    }
    busy = true;
    status.textContent = "saving…";
    const labels = given.map((g) => ({ photo: g.photo, label: g.label }));
    try {
      if (labels.length > 0) {
        const response = await fetch("/api/labels", {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-Swipebot-Csrf": token },
          body: JSON.stringify({ profile_id: profileId, labels }),
        });
        if (!response.ok) {
          throw new Error(await response.text());
        }
      }
      window.location.href = "/label?after=" + encodeURIComponent(profileId);
    } catch (e) {
      busy = false;
      status.textContent = "not saved: " + e.message;
      status.classList.add("error");
    }
  }

  document.addEventListener("keydown", (event) => {
    if (busy || event.altKey || event.ctrlKey || event.metaKey) {
      return;
    }
    const actions = {
      ArrowLeft: () => label("nope"),
      ArrowRight: () => label("like"),
      ArrowUp: () => labelAll("like"),
      ArrowDown: () => labelAll("nope"),
      Backspace: undo,
      Enter: save,
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });
  show();
})();
