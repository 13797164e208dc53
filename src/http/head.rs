//! The bound on a request head: request line plus header fields, at most
//! `HTTP_MAX_HEADER_SIZE_KB` (16 KiB by default) on every listener. Over it
//! the request is answered 431 with the JSON error body and the connection
//! is closed after the answer (a request the client already pipelined
//! behind it is still answered by actix-http); no handler, rate limiter or
//! WebSocket upgrade sees it.
//!
//! The check runs once actix-http has parsed the head, so it cannot stop the
//! parser from buffering: actix-http holds at most 128 KiB of an incomplete
//! head (`MAX_BUFFER_SIZE`) and at most 96 header fields, and answers 431
//! itself, without a body, past either. A request target over 65,534 bytes
//! is refused by the parser with 400. Below those, this bound decides.

use super::error::ApiError;
use super::limits::client_ip;
use actix_web::body::EitherBody;
use actix_web::dev::{RequestHead, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::ConnectionType;
use actix_web::{Error, ResponseError};
use futures_util::future::{ready, Either, MapOk, Ready, TryFutureExt};
use log::warn;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The size of `head` as an HTTP/1.1 client sends it in canonical form:
/// `METHOD SP target SP HTTP/1.1 CRLF`, each field as `name: value CRLF`,
/// and the closing CRLF. Optional whitespace around values (which the
/// parser drops) is not counted.
pub fn head_size(head: &RequestHead) -> usize {
    let uri = &head.uri;
    let target = match uri.path_and_query() {
        Some(pq) => {
            let origin = match (uri.scheme_str(), uri.authority()) {
                (Some(scheme), Some(authority)) => scheme.len() + 3 + authority.as_str().len(),
                _ => 0,
            };
            origin + pq.as_str().len()
        }
        None => uri.authority().map_or(0, |a| a.as_str().len()),
    };
    let line = head.method.as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = head
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + fields + 2
}

/// The middleware, wrapped outermost on every listener's app.
#[derive(Clone)]
pub struct HeadLimit {
    max: usize,
    /// Trusted proxy hops for the logged client address: WebSocket upgrades
    /// (`{path_prefix}/app/…`) and everything else.
    ws_trust_hops: u32,
    api_trust_hops: u32,
    /// Where WebSocket upgrades start: `{path_prefix}/app/`.
    ws_path: Arc<str>,
}

impl HeadLimit {
    /// `max_bytes` of request line and header fields; the hops only change
    /// which address the refusal is logged with.
    pub fn new(max_bytes: usize, api_trust_hops: u32, ws_trust_hops: u32) -> Self {
        HeadLimit {
            max: max_bytes,
            ws_trust_hops,
            api_trust_hops,
            ws_path: Arc::from("/app/"),
        }
    }

    /// WebSocket upgrades are under `prefix` (`path_prefix`, `""` for none).
    pub fn with_path_prefix(mut self, prefix: &str) -> Self {
        self.ws_path = Arc::from(format!("{prefix}/app/"));
        self
    }

    /// The trusted hops of the client address logged for a refusal at `path`.
    fn trust_hops(&self, path: &str) -> u32 {
        if path.starts_with(&*self.ws_path) {
            self.ws_trust_hops
        } else {
            self.api_trust_hops
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for HeadLimit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = HeadLimitService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HeadLimitService {
            service,
            limit: self.clone(),
        }))
    }
}

pub struct HeadLimitService<S> {
    service: S,
    limit: HeadLimit,
}

type Passed<B> = fn(ServiceResponse<B>) -> ServiceResponse<EitherBody<B>>;

impl<S, B> Service<ServiceRequest> for HeadLimitService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future =
        Either<MapOk<S::Future, Passed<B>>, Ready<Result<ServiceResponse<EitherBody<B>>, Error>>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let max = self.limit.max;
        let size = head_size(req.head());
        if size <= max {
            let passed: Passed<B> = ServiceResponse::map_into_left_body;
            return Either::Left(self.service.call(req).map_ok(passed));
        }
        let hops = self.limit.trust_hops(req.path());
        let peer = client_ip(req.headers(), req.peer_addr(), hops)
            .map_or_else(|| "unix".to_string(), |ip| ip.to_string());
        warn!(
            event = "headers_too_large", peer = peer.as_str(), method = req.method().as_str(),
            size = size, limit = max, reason = "request head over HTTP_MAX_HEADER_SIZE_KB";
            "request refused: request line and headers are larger than the limit"
        );
        let error = ApiError::HeadersTooLarge(format!(
            "Request line and headers are larger than {max} bytes"
        ));
        let mut response = error.error_response();
        // The request's body is not worth reading: close after the answer.
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        Either::Right(ready(Ok(req.into_response(response).map_into_right_body())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn websocket_upgrades_are_told_by_their_path_under_the_prefix() {
        let plain = HeadLimit::new(1024, 1, 2);
        assert_eq!(plain.trust_hops("/app/key"), 2);
        assert_eq!(plain.trust_hops("/apps/1/events"), 1);
        let prefixed = plain.with_path_prefix("/ws");
        assert_eq!(prefixed.trust_hops("/ws/app/key"), 2);
        assert_eq!(prefixed.trust_hops("/app/key"), 1);
        assert_eq!(prefixed.trust_hops("/ws/apps/1/events"), 1);
    }

    #[test]
    fn head_size_counts_the_request_line_and_fields_as_sent() {
        let req = TestRequest::get()
            .uri("/apps/1/channels?a=b")
            .insert_header(("host", "localhost"))
            .insert_header(("x-pad", "yy"))
            .append_header(("x-pad", "z"))
            .to_srv_request();
        let sent = "GET /apps/1/channels?a=b HTTP/1.1\r\n\
                    host: localhost\r\nx-pad: yy\r\nx-pad: z\r\n\r\n";
        assert_eq!(head_size(req.head()), sent.len());

        let absolute = TestRequest::get()
            .uri("http://example.com/up")
            .to_srv_request();
        assert_eq!(
            head_size(absolute.head()),
            "GET http://example.com/up HTTP/1.1\r\n\r\n".len()
        );
    }
}
