// Copy buttons (the text is in data-copy) and a confirmation before forms marked data-confirm.
// Everything works without JavaScript too (deleting tags and manifests has its own confirmation page).
"use strict";
document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const text = button.dataset.copy;
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch (error) {
    // No clipboard (plain HTTP on another host): select the text so Ctrl+C copies it.
    const code = button.parentElement.querySelector("code");
    if (code) window.getSelection().selectAllChildren(code);
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => { button.textContent = label; }, 1500);
});
