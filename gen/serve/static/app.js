// gen serve: the little the pages do in the browser. Everything works without it; it adds the
// slider over progress grids, image panels in a dialog and a job log that follows the job.
"use strict";

function gridSlider() {
  const slider = document.getElementById("grid-slider");
  if (!slider) return;
  const iterations = slider.dataset.iterations.split(",");
  const image = document.getElementById("grid-image");
  const label = document.getElementById("grid-iteration");
  slider.addEventListener("input", () => {
    const iteration = iterations[Number(slider.value)];
    image.src = slider.dataset.base + iteration + ".png";
    label.textContent = iteration;
  });
}

function imagePanels() {
  const dialog = document.getElementById("panel");
  const body = document.getElementById("panel-body");
  document.querySelectorAll("a.image-link").forEach((link) => {
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      const response = await fetch(link.dataset.panel, { credentials: "same-origin" });
      body.innerHTML = await response.text();
      dialog.showModal();
    });
  });
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
}

function followLog() {
  const log = document.getElementById("log");
  if (!log || log.dataset.finished === "1") return;
  const status = document.getElementById("job-status");
  let offset = Number(log.dataset.offset);
  const poll = async () => {
    const response = await fetch(`/api/jobs/${log.dataset.job}/log?offset=${offset}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const part = await response.json();
    if (part.text) {
      log.textContent += part.text;
      log.scrollTop = log.scrollHeight;
    }
    offset = part.offset;
    status.textContent = part.status;
    status.className = "status-" + part.status;
    if (part.finished) {
      window.location.reload(); // shows the exit code and the model it made
    } else {
      setTimeout(poll, 1000);
    }
  };
  setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  gridSlider();
  imagePanels();
  followLog();
});
