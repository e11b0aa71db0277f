// Loaded after require.min.js and before embed-amd.js (see _config.yml, nb_ipywidgets_js).
// embed-amd.js finds its own files (the Font Awesome fonts of the widgets' CSS) under the URL that require.js gives
// its module, "@jupyter-widgets/html-manager/dist/...". require.js resolves module names against the page's own
// folder by default; point it at the folder that holds this script (_static/), where the fonts are.
(function () {
  var here = document.currentScript.src;
  require.config({ baseUrl: here.slice(0, here.lastIndexOf("/") + 1) });
})();
