//! The server's gRPC codec: requests are decoded with prost (a request that
//! is not the expected message is INVALID_ARGUMENT, naming the call), and
//! responses go out as bytes encoded beforehand. An update of the Watch stream
//! is encoded once by the publisher and shared by every viewer's queue (a
//! reference count each), instead of being copied and encoded once a viewer.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Requests of type `D` in, encoded messages out.
pub(crate) struct Raw<D> {
    call: &'static str,
    _request: PhantomData<fn() -> D>,
}

impl<D> Raw<D> {
    /// The codec of `call` (its name, for error messages).
    pub(crate) fn new(call: &'static str) -> Raw<D> {
        Raw {
            call,
            _request: PhantomData,
        }
    }
}

impl<D: prost::Message + Default + Send + 'static> Codec for Raw<D> {
    type Encode = Bytes;
    type Decode = D;
    type Encoder = BytesEncoder;
    type Decoder = RequestDecoder<D>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> RequestDecoder<D> {
        RequestDecoder {
            call: self.call,
            _request: PhantomData,
        }
    }
}

/// Writes already encoded messages.
pub(crate) struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

/// Decodes one request message.
pub(crate) struct RequestDecoder<D> {
    call: &'static str,
    _request: PhantomData<fn() -> D>,
}

impl<D: prost::Message + Default> Decoder for RequestDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let len = src.remaining();
        D::decode(src).map(Some).map_err(|e| {
            Status::invalid_argument(format!(
                "the {} request ({len} bytes) is not a taskscope.v1 message: {e}",
                self.call
            ))
        })
    }
}

/// `message`, encoded.
pub(crate) fn encode(message: &impl prost::Message) -> Bytes {
    Bytes::from(message.encode_to_vec())
}
