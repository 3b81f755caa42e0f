// The API documentation page's script (a file, not inline, so the CSP can forbid inline code):
// Swagger UI over this KMC's OpenAPI document, named by the page's #swagger-ui element.
window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").getAttribute("data-document-url"),
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
});
