//! The files the page loads besides itself, built into the binary so that
//! the page works with no network: xterm.js, which renders the jobs'
//! output as a terminal would (vendored from its npm package, see
//! `static/xterm/README.md` in the package).
//!
//! Their paths carry xterm.js's version, so a browser may keep them for as
//! long as it likes: a new version comes under a new path.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// One built-in file: its path, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 2] = [
    Asset {
        path: "/static/xterm-6.0.0/xterm.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../static/xterm/xterm.js"),
    },
    Asset {
        path: "/static/xterm-6.0.0/xterm.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../static/xterm/xterm.css"),
    },
];

/// Registers a `GET` route for each built-in file.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for asset in &ASSETS {
        let (content_type, body) = (asset.content_type, asset.body);
        cfg.service(web::resource(asset.path).get(move || async move {
            HttpResponse::Ok()
                .content_type(content_type)
                .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
                .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .body(body)
        }));
    }
}
