/** OHIF Viewer 3.x served beside the ED triage worklist, on the same origin (see the README,
 * "OHIF beside the product"): its DICOMweb requests go to the product's /dicomweb/ with the
 * signed-in user's session cookie, so the product's role rules and audit apply to them.
 * Copy this file over the `app-config.js` of OHIF's built `dist/`. */
window.config = {
  name: "ed-triage",
  routerBasename: null,
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: "triage",
  dataSources: [
    {
      namespace: "@ohif/extension-default.dataSourcesModule.dicomweb",
      sourceName: "triage",
      configuration: {
        friendlyName: "ED triage worklist",
        name: "triage",
        wadoUriRoot: window.location.origin + "/dicomweb",
        qidoRoot: window.location.origin + "/dicomweb",
        wadoRoot: window.location.origin + "/dicomweb",
        qidoSupportsIncludeField: false, // every attribute held is returned anyway
        supportsFuzzyMatching: false, // PatientName is not a matching key here
        supportsWildcard: true, // PatientID and AccessionNumber take * and ?
        imageRendering: "wadors", // frames from .../frames/{n}
        thumbnailRendering: "wadors",
        enableStudyLazyLoad: true,
        staticWado: false,
        singlepart: "bulkdata,video",
        bulkDataURI: { enabled: false },
        omitQuotationForMultipartRequest: true,
        requestOptions: { requestCredentials: "same-origin" },
      },
    },
  ],
};
