//! A record's fields one by one, through serde: what the COPY text line and
//! the writer's column list are made from, so both follow the one
//! definition of [`super::record::Record`].
//!
//! serde_json writes the JSON form of the same struct; this module is the
//! other half: a serializer that hands each field of a flat struct to a
//! callback as a name and a plain value.

use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// One field's value, as COPY text format needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    Null,
    Text(&'a str),
    Int(i64),
}

/// Calls `each(name, value)` for every field of a flat struct, in order.
/// Fields must be strings, integers, or options of them: anything else is a
/// programming error in the record's definition, reported as `Err`.
pub fn for_each_field<T: Serialize + ?Sized>(
    record: &T,
    each: &mut dyn FnMut(&'static str, Field<'_>),
) -> Result<(), Unsupported> {
    record.serialize(StructWalker { each })
}

/// A value of a kind a record must not have.
#[derive(Debug)]
pub struct Unsupported(String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit record field of an unsupported kind: {}", self.0)
    }
}
impl std::error::Error for Unsupported {}
impl ser::Error for Unsupported {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Unsupported(msg.to_string())
    }
}

fn unsupported<T>(what: &str) -> Result<T, Unsupported> {
    Err(Unsupported(what.to_string()))
}

/// Serializes the top-level struct: each field goes to the callback.
struct StructWalker<'c> {
    each: &'c mut dyn FnMut(&'static str, Field<'_>),
}

impl<'c> ser::SerializeStruct for StructWalker<'c> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), Unsupported> {
        value.serialize(FieldSer {
            key,
            each: &mut *self.each,
        })
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

/// Serializes one field's value into a [`Field`].
struct FieldSer<'c> {
    key: &'static str,
    each: &'c mut dyn FnMut(&'static str, Field<'_>),
}

/// Serializer methods a record never needs: each is an error.
macro_rules! reject {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ret, Unsupported> {
            unsupported(stringify!($method))
        })*
    };
}

impl<'c> ser::Serializer for StructWalker<'c> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Unsupported> {
        Ok(self)
    }

    reject! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> (); serialize_i16(i16) -> (); serialize_i32(i32) -> (); serialize_i64(i64) -> ();
        serialize_u8(u8) -> (); serialize_u16(u16) -> (); serialize_u32(u32) -> (); serialize_u64(u64) -> ();
        serialize_f32(f32) -> (); serialize_f64(f64) -> (); serialize_char(char) -> ();
        serialize_str(&str) -> (); serialize_bytes(&[u8]) -> ();
        serialize_none() -> (); serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }

    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<(), Unsupported> {
        unsupported("serialize_some")
    }
    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &V,
    ) -> Result<(), Unsupported> {
        unsupported("serialize_newtype_struct")
    }
    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<(), Unsupported> {
        unsupported("serialize_newtype_variant")
    }
}

impl<'c> ser::Serializer for FieldSer<'c> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Impossible<(), Unsupported>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        (self.each)(self.key, Field::Text(v));
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        (self.each)(self.key, Field::Int(v));
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.serialize_i64(v.into())
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        (self.each)(self.key, Field::Null);
        Ok(())
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.serialize_none()
    }
    fn serialize_some<V: Serialize + ?Sized>(self, v: &V) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &V,
    ) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<(), Unsupported> {
        unsupported("serialize_newtype_variant")
    }

    reject! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> (); serialize_i16(i16) -> ();
        serialize_u8(u8) -> (); serialize_u16(u16) -> (); serialize_u32(u32) -> (); serialize_u64(u64) -> ();
        serialize_f32(f32) -> (); serialize_f64(f64) -> (); serialize_char(char) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}
