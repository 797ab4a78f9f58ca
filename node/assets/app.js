// kith web interface: small enhancements on top of htmx. No inline script anywhere; this
// file is served from the node itself (Content-Security-Policy: script-src 'self').
"use strict";

(function () {
  // Hashtags and mentions recognised as you type, under the compose box.
  function hint(textarea) {
    var out = document.getElementById("compose-hint");
    if (!out) return;
    var text = textarea.value;
    var tags = [];
    var re = /(^|[^\p{L}\p{N}_#@])#([\p{L}\p{N}_]+)/gu;
    var m;
    while ((m = re.exec(text)) !== null) {
      var t = "#" + m[2].toLowerCase();
      if (tags.indexOf(t) < 0) tags.push(t);
    }
    var mentions = (text.match(/(^|[^\w@])@12D3KooW[1-9A-HJ-NP-Za-km-z]{44}/g) || []).length;
    var parts = [];
    if (tags.length) parts.push(tags.join(" "));
    if (mentions) parts.push(mentions + (mentions === 1 ? " mention" : " mentions"));
    var bytes = new TextEncoder().encode(text).length;
    if (bytes > 3500) parts.push(bytes + " / 4096 bytes");
    out.textContent = parts.join(" · ");
  }

  document.addEventListener("input", function (e) {
    if (e.target && e.target.id === "compose-text") hint(e.target);
  });

  // Ctrl+Enter (or Cmd+Enter) sends a compose or reply box.
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && t && t.tagName === "TEXTAREA" && t.form) {
      e.preventDefault();
      t.form.requestSubmit();
    }
  });

  // Files: the compose and chat boxes attach them when this script runs (they go as a
  // multipart form, with the CSRF token in a header); a post or message may then have
  // no text.
  var BOXES = [
    { form: "compose", files: "compose-files", text: "compose-text", msg: "compose-msg", attach: "compose-attach" },
    { form: "chat-form", files: "chat-files", text: "chat-text", msg: "chat-msg", attach: "chat-attach" }
  ];
  function filesChosen(box) {
    var form = document.getElementById(box.form);
    var input = document.getElementById(box.files);
    if (!form || !input) return;
    var any = input.files && input.files.length > 0;
    if (any) {
      form.setAttribute("hx-encoding", "multipart/form-data");
      form.setAttribute("enctype", "multipart/form-data");
    } else {
      form.removeAttribute("hx-encoding");
      form.removeAttribute("enctype");
    }
    var text = document.getElementById(box.text);
    if (text) text.required = !any;
    var msg = document.getElementById(box.msg);
    if (msg) {
      var names = [];
      for (var i = 0; any && i < input.files.length; i++) names.push(input.files[i].name);
      msg.textContent = names.length ? "Attached: " + names.join(", ") : "";
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    BOXES.forEach(function (box) {
      var attach = document.getElementById(box.attach);
      if (attach) attach.hidden = false;
    });
  });
  document.addEventListener("change", function (e) {
    BOXES.forEach(function (box) {
      if (e.target && e.target.id === box.files) filesChosen(box);
    });
  });

  // After a post or message is sent its box empties; the server says so.
  document.addEventListener("kith:posted", function () {
    var form = document.getElementById("compose");
    if (form) {
      form.reset();
      hint(document.getElementById("compose-text"));
    }
    var chat = document.getElementById("chat-form");
    if (chat) chat.reset();
    BOXES.forEach(filesChosen);
  });

  // Times get a full local date and time on hover.
  function localTimes(root) {
    var times = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var d = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(d)) times[i].title = d.toLocaleString();
    }
  }
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:after:swap", function () { localTimes(document); });
})();
