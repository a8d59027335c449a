//! The simulated objects of a device: their kinds, properties and the rules
//! for reading and writing them. Plain data, no I/O; the device model
//! ([`super::device`]) owns a `Vec<Object>` and answers services with it.

use std::f64::consts::TAU;

use crate::bacnet::codec::Value;
use crate::bacnet::services::{ErrorClassCode, PropertyRef};
use crate::bacnet::types::{error, object_type, property as p, ObjectId, StatusFlags};

/// Units: degrees-celsius and percent (BACnetEngineeringUnits).
const UNITS_DEGREES_CELSIUS: u32 = 62;
const UNITS_PERCENT: u32 = 98;
/// Number_Of_States of every multi-state-value, and its State_Text.
pub const STATES: [&str; 3] = ["Off", "Auto", "Manual"];
/// Period of the analog-input drift.
const DRIFT_PERIOD_S: f64 = 600.0;

pub(crate) const fn err(class: u32, code: u32) -> ErrorClassCode {
    ErrorClassCode { class, code }
}

pub(crate) const UNKNOWN_PROPERTY: ErrorClassCode = err(error::CLASS_PROPERTY, error::CODE_UNKNOWN_PROPERTY);
pub(crate) const WRITE_ACCESS_DENIED: ErrorClassCode = err(error::CLASS_PROPERTY, error::CODE_WRITE_ACCESS_DENIED);
pub(crate) const INVALID_DATA_TYPE: ErrorClassCode = err(error::CLASS_PROPERTY, error::CODE_INVALID_DATA_TYPE);
pub(crate) const VALUE_OUT_OF_RANGE: ErrorClassCode = err(error::CLASS_PROPERTY, error::CODE_VALUE_OUT_OF_RANGE);
pub(crate) const INVALID_ARRAY_INDEX: ErrorClassCode = err(error::CLASS_PROPERTY, error::CODE_INVALID_ARRAY_INDEX);
pub(crate) const NOT_AN_ARRAY: ErrorClassCode = err(error::CLASS_PROPERTY, error::CODE_PROPERTY_IS_NOT_AN_ARRAY);

/// The object types a simulated device has, in Object_List order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AnalogInput,
    AnalogOutput,
    AnalogValue,
    BinaryInput,
    BinaryOutput,
    MultiStateValue,
    CharacterStringValue,
}

const COMMON: [u32; 7] = [
    p::OBJECT_IDENTIFIER,
    p::OBJECT_NAME,
    p::OBJECT_TYPE,
    p::PRESENT_VALUE,
    p::STATUS_FLAGS,
    p::EVENT_STATE,
    p::OUT_OF_SERVICE,
];

/// How many objects of each [`Kind`] a device has, in [`Kind::ALL`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts([usize; Kind::ALL.len()]);

impl Counts {
    /// `n` objects of every kind.
    pub fn per_kind(n: usize) -> Self {
        Self([n; Kind::ALL.len()])
    }

    /// `total` objects spread over the kinds in turn, so every kind is
    /// there: 50 are 8 analog-inputs and 7 of each other kind.
    pub fn spread(total: usize) -> Self {
        let k = Kind::ALL.len();
        Self(std::array::from_fn(|slot| total / k + usize::from(slot < total % k)))
    }

    /// Objects of the kind at `slot`.
    pub fn of(&self, slot: usize) -> usize {
        self.0.get(slot).copied().unwrap_or(0)
    }

    /// Index of the first object of the kind at `slot` in a list holding
    /// every kind in turn.
    pub fn offset(&self, slot: usize) -> usize {
        self.0.iter().take(slot).sum()
    }

    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }

    /// The object counts of a device reconfigured to Database_Revision
    /// `revision` (the first is 1): every even revision has one more
    /// analog-value and one binary-input fewer, so the object list changes
    /// at every revision.
    pub fn revised(self, revision: u64) -> Self {
        let mut c = self;
        if revision.is_multiple_of(2) {
            c.0[2] += 1;
            c.0[3] = c.0[3].saturating_sub(1);
        }
        c
    }
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::AnalogInput,
        Kind::AnalogOutput,
        Kind::AnalogValue,
        Kind::BinaryInput,
        Kind::BinaryOutput,
        Kind::MultiStateValue,
        Kind::CharacterStringValue,
    ];

    pub fn object_type(self) -> u16 {
        match self {
            Kind::AnalogInput => object_type::ANALOG_INPUT,
            Kind::AnalogOutput => object_type::ANALOG_OUTPUT,
            Kind::AnalogValue => object_type::ANALOG_VALUE,
            Kind::BinaryInput => object_type::BINARY_INPUT,
            Kind::BinaryOutput => object_type::BINARY_OUTPUT,
            Kind::MultiStateValue => object_type::MULTI_STATE_VALUE,
            Kind::CharacterStringValue => object_type::CHARACTER_STRING_VALUE,
        }
    }

    /// Position in [`Kind::ALL`] of an object type.
    pub fn slot(object_type: u16) -> Option<usize> {
        Kind::ALL.iter().position(|k| k.object_type() == object_type)
    }

    fn commandable(self) -> bool {
        matches!(self, Kind::AnalogOutput | Kind::BinaryOutput)
    }

    fn analog(self) -> bool {
        matches!(self, Kind::AnalogInput | Kind::AnalogOutput | Kind::AnalogValue)
    }

    /// Required properties (clause 12), in the order ReadPropertyMultiple
    /// answers them.
    pub fn required(self) -> &'static [u32] {
        const AI: [u32; 8] = concat(COMMON, [p::UNITS]);
        const AO: [u32; 11] =
            concat(COMMON, [p::UNITS, p::PRIORITY_ARRAY, p::RELINQUISH_DEFAULT, p::CURRENT_COMMAND_PRIORITY]);
        const BI: [u32; 8] = concat(COMMON, [p::POLARITY]);
        const BO: [u32; 11] =
            concat(COMMON, [p::POLARITY, p::PRIORITY_ARRAY, p::RELINQUISH_DEFAULT, p::CURRENT_COMMAND_PRIORITY]);
        const MSV: [u32; 8] = concat(COMMON, [p::NUMBER_OF_STATES]);
        const CSV: [u32; 5] = [p::OBJECT_IDENTIFIER, p::OBJECT_NAME, p::OBJECT_TYPE, p::PRESENT_VALUE, p::STATUS_FLAGS];
        match self {
            Kind::AnalogInput | Kind::AnalogValue => &AI,
            Kind::AnalogOutput => &AO,
            Kind::BinaryInput => &BI,
            Kind::BinaryOutput => &BO,
            Kind::MultiStateValue => &MSV,
            Kind::CharacterStringValue => &CSV,
        }
    }

    pub fn optional(self) -> &'static [u32] {
        match self {
            Kind::AnalogInput | Kind::AnalogOutput | Kind::AnalogValue => {
                &[p::DESCRIPTION, p::RELIABILITY, p::COV_INCREMENT]
            }
            Kind::BinaryInput | Kind::BinaryOutput => &[p::DESCRIPTION, p::RELIABILITY],
            Kind::MultiStateValue => &[p::DESCRIPTION, p::RELIABILITY, p::STATE_TEXT],
            Kind::CharacterStringValue => &[p::EVENT_STATE, p::OUT_OF_SERVICE, p::DESCRIPTION, p::RELIABILITY],
        }
    }

    pub fn has(self, property: u32) -> bool {
        self.required().contains(&property) || self.optional().contains(&property)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::AnalogInput => "Zone Temp",
            Kind::AnalogOutput => "Valve Position",
            Kind::AnalogValue => "Fan Speed",
            Kind::BinaryInput => "Fan Status",
            Kind::BinaryOutput => "Pump Command",
            Kind::MultiStateValue => "Operating Mode",
            Kind::CharacterStringValue => "Display Text",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Kind::AnalogInput => "simulated zone temperature, drifting slowly",
            Kind::AnalogOutput => "simulated valve command (commandable)",
            Kind::AnalogValue => "simulated fan speed setting",
            Kind::BinaryInput => "simulated fan status",
            Kind::BinaryOutput => "simulated pump command (commandable)",
            Kind::MultiStateValue => "simulated operating mode",
            Kind::CharacterStringValue => "simulated display text",
        }
    }
}

const fn concat<const A: usize, const B: usize, const N: usize>(a: [u32; A], b: [u32; B]) -> [u32; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// A present value.
#[derive(Debug, Clone, PartialEq)]
pub enum Pv {
    Real(f32),
    Binary(bool),
    State(u32),
    Text(String),
}

impl Pv {
    pub fn to_value(&self) -> Value {
        match self {
            Pv::Real(v) => Value::Real(*v),
            Pv::Binary(b) => Value::Enumerated(u32::from(*b)),
            Pv::State(s) => Value::Unsigned(u64::from(*s)),
            Pv::Text(t) => Value::CharacterString(t.clone()),
        }
    }
}

/// One simulated object (any kind but the device).
#[derive(Debug, Clone)]
pub struct Object {
    pub id: ObjectId,
    pub kind: Kind,
    /// The present value of an uncommanded object; for an analog-input, the
    /// value it shows while not drifting.
    value: Pv,
    /// Analog-inputs drift with time until written out of service or forced.
    drifting: bool,
    phase: f64,
    /// Commandable objects only.
    priority_array: Option<Box<[Option<Pv>; 16]>>,
    out_of_service: bool,
    cov_increment: f32,
}

impl Object {
    pub fn new(kind: Kind, instance: u32, device: u32) -> Self {
        let value = match kind {
            Kind::AnalogInput | Kind::AnalogOutput => Pv::Real(0.0),
            Kind::AnalogValue => Pv::Real(50.0),
            Kind::BinaryInput => Pv::Binary(instance % 2 == 1),
            Kind::BinaryOutput => Pv::Binary(false),
            Kind::MultiStateValue => Pv::State(1),
            Kind::CharacterStringValue => Pv::Text(format!("hello from device {device}")),
        };
        // A per-object phase, spread over the circle and different per device.
        let phase = (f64::from(instance) * 0.618_034 + f64::from(device) * 0.414_214).fract() * TAU;
        Self {
            id: ObjectId::new(kind.object_type(), instance),
            kind,
            value,
            drifting: kind == Kind::AnalogInput,
            phase,
            priority_array: kind.commandable().then(Box::default),
            out_of_service: false,
            cov_increment: if kind == Kind::AnalogInput { 0.1 } else { 1.0 },
        }
    }

    pub fn name(&self) -> String {
        format!("{} {}", self.kind.name(), self.id.instance)
    }

    fn drift(&self, t: f64) -> f32 {
        let v = 21.0 + 3.0 * (TAU * t / DRIFT_PERIOD_S + self.phase).sin();
        ((v * 100.0).round() / 100.0) as f32
    }

    /// The present value `t` seconds after the simulator started.
    pub fn present_value(&self, t: f64) -> Pv {
        if self.drifting && !self.out_of_service {
            return Pv::Real(self.drift(t));
        }
        match &self.priority_array {
            Some(slots) => slots.iter().flatten().next().unwrap_or(&self.value).clone(),
            None => self.value.clone(),
        }
    }

    /// A restart of the device: every command relinquished.
    pub fn clear_priority_array(&mut self) {
        if let Some(slots) = self.priority_array.as_deref_mut() {
            slots.iter_mut().for_each(|s| *s = None);
        }
    }

    fn active_priority(&self) -> Option<usize> {
        self.priority_array.as_ref()?.iter().position(Option::is_some).map(|i| i + 1)
    }

    pub fn status_flags(&self) -> StatusFlags {
        StatusFlags { out_of_service: self.out_of_service, ..StatusFlags::default() }
    }

    /// Whether a change from `last` to `now` is worth a COV notification.
    pub fn cov_changed(&self, last: &Pv, now: &Pv) -> bool {
        match (last, now) {
            (Pv::Real(a), Pv::Real(b)) => (a - b).abs() >= self.cov_increment,
            (a, b) => a != b,
        }
    }

    /// Reads a property `t` seconds after start.
    pub fn read(&self, prop: PropertyRef, t: f64) -> Result<Value, ErrorClassCode> {
        if !self.kind.has(prop.property) {
            return Err(UNKNOWN_PROPERTY);
        }
        match prop.property {
            p::PRIORITY_ARRAY => {
                let slots = self.priority_array.as_deref().ok_or(UNKNOWN_PROPERTY)?;
                return array(prop.index, 16, |i| slots[i].as_ref().map_or(Value::Null, Pv::to_value));
            }
            p::STATE_TEXT => {
                return array(prop.index, STATES.len(), |i| Value::CharacterString(STATES[i].to_string()));
            }
            _ if prop.index.is_some() => return Err(NOT_AN_ARRAY),
            _ => {}
        }
        Ok(match prop.property {
            p::OBJECT_IDENTIFIER => Value::ObjectId(self.id),
            p::OBJECT_NAME => Value::CharacterString(self.name()),
            p::OBJECT_TYPE => Value::Enumerated(u32::from(self.id.object_type)),
            p::PRESENT_VALUE => self.present_value(t).to_value(),
            p::STATUS_FLAGS => Value::BitString(self.status_flags().to_bits()),
            p::EVENT_STATE | p::RELIABILITY | p::POLARITY => Value::Enumerated(0),
            p::OUT_OF_SERVICE => Value::Boolean(self.out_of_service),
            p::DESCRIPTION => Value::CharacterString(self.kind.description().to_string()),
            p::UNITS => {
                Value::Enumerated(if self.kind == Kind::AnalogInput { UNITS_DEGREES_CELSIUS } else { UNITS_PERCENT })
            }
            p::COV_INCREMENT => Value::Real(self.cov_increment),
            p::RELINQUISH_DEFAULT => self.value.to_value(),
            p::CURRENT_COMMAND_PRIORITY => self.active_priority().map_or(Value::Null, |p| Value::Unsigned(p as u64)),
            p::NUMBER_OF_STATES => Value::Unsigned(STATES.len() as u64),
            _ => return Err(UNKNOWN_PROPERTY),
        })
    }

    /// Writes a property (WriteProperty), `t` seconds after start.
    pub fn write(
        &mut self,
        prop: PropertyRef,
        value: &Value,
        priority: Option<u8>,
        t: f64,
    ) -> Result<(), ErrorClassCode> {
        if !self.kind.has(prop.property) {
            return Err(UNKNOWN_PROPERTY);
        }
        if prop.index.is_some() {
            return Err(match prop.property {
                p::PRIORITY_ARRAY | p::STATE_TEXT => WRITE_ACCESS_DENIED,
                _ => NOT_AN_ARRAY,
            });
        }
        match prop.property {
            p::PRESENT_VALUE => self.write_present_value(value, priority),
            p::RELINQUISH_DEFAULT => {
                self.value = self.typed(value)?;
                Ok(())
            }
            p::OUT_OF_SERVICE => match value {
                Value::Boolean(b) => {
                    if *b && !self.out_of_service && self.drifting {
                        // Freeze the value it had, so it does not jump.
                        self.value = Pv::Real(self.drift(t));
                    }
                    self.out_of_service = *b;
                    Ok(())
                }
                _ => Err(INVALID_DATA_TYPE),
            },
            p::COV_INCREMENT => match value {
                Value::Real(v) if v.is_finite() && *v >= 0.0 => {
                    self.cov_increment = *v;
                    Ok(())
                }
                Value::Real(_) => Err(VALUE_OUT_OF_RANGE),
                _ => Err(INVALID_DATA_TYPE),
            },
            _ => Err(WRITE_ACCESS_DENIED),
        }
    }

    fn write_present_value(&mut self, value: &Value, priority: Option<u8>) -> Result<(), ErrorClassCode> {
        if let Some(slots) = self.priority_array.as_deref_mut() {
            let p = usize::from(priority.unwrap_or(16));
            if !(1..=16).contains(&p) {
                return Err(VALUE_OUT_OF_RANGE);
            }
            slots[p - 1] = match value {
                Value::Null => None,
                v => Some(typed(self.kind, v)?),
            };
            return Ok(());
        }
        match self.kind {
            Kind::AnalogInput | Kind::BinaryInput if !self.out_of_service => Err(WRITE_ACCESS_DENIED),
            _ => {
                self.value = self.typed(value)?;
                Ok(())
            }
        }
    }

    fn typed(&self, value: &Value) -> Result<Pv, ErrorClassCode> {
        typed(self.kind, value)
    }

    /// Sets the value the object shows when nothing commands it, bypassing
    /// the write rules (the simulated physical world or a local operator):
    /// an input's reading (an analog-input stops drifting), a value object's
    /// value, an output's Relinquish_Default.
    pub fn force(&mut self, value: &Value) -> Result<(), ErrorClassCode> {
        self.value = self.typed(value)?;
        self.drifting = false;
        Ok(())
    }
}

/// Checks a written value against an object kind's present-value type.
fn typed(kind: Kind, value: &Value) -> Result<Pv, ErrorClassCode> {
    match (kind, value) {
        (k, Value::Real(v)) if k.analog() => {
            if v.is_finite() {
                Ok(Pv::Real(*v))
            } else {
                Err(VALUE_OUT_OF_RANGE)
            }
        }
        (Kind::BinaryInput | Kind::BinaryOutput, Value::Enumerated(v)) => match v {
            0 => Ok(Pv::Binary(false)),
            1 => Ok(Pv::Binary(true)),
            _ => Err(VALUE_OUT_OF_RANGE),
        },
        (Kind::MultiStateValue, Value::Unsigned(v)) => match u32::try_from(*v) {
            Ok(s) if (1..=STATES.len() as u32).contains(&s) => Ok(Pv::State(s)),
            _ => Err(VALUE_OUT_OF_RANGE),
        },
        (Kind::CharacterStringValue, Value::CharacterString(s)) => Ok(Pv::Text(s.clone())),
        _ => Err(INVALID_DATA_TYPE),
    }
}

/// Reads a BACnetARRAY: no index is the whole array, index 0 its length,
/// index n its nth element.
pub fn array(index: Option<u32>, len: usize, element: impl Fn(usize) -> Value) -> Result<Value, ErrorClassCode> {
    match index {
        None => Ok(Value::List((0..len).map(element).collect())),
        Some(0) => Ok(Value::Unsigned(len as u64)),
        Some(i) => match usize::try_from(i) {
            Ok(i) if i <= len => Ok(element(i - 1)),
            _ => Err(INVALID_ARRAY_INDEX),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(o: &Object) -> Value {
        o.read(PropertyRef::new(p::PRESENT_VALUE), 0.0).unwrap()
    }

    #[test]
    fn a_point_count_is_spread_over_every_kind() {
        let c = Counts::spread(50);
        assert_eq!((0..7).map(|k| c.of(k)).collect::<Vec<_>>(), [8, 7, 7, 7, 7, 7, 7]);
        assert_eq!((c.total(), c.offset(0), c.offset(1), c.offset(6)), (50, 0, 8, 43));
        assert_eq!(Counts::spread(3).total(), 3);
        assert_eq!(Counts::per_kind(2).total(), 14);
        let c = Counts::per_kind(1);
        assert_eq!(c.revised(1), c);
        assert_eq!((c.revised(2).of(2), c.revised(2).of(3), c.revised(2).total()), (2, 0, 7));
        assert_eq!(c.revised(3), c);
    }

    #[test]
    fn commandable_objects_follow_the_priority_array() {
        let mut ao = Object::new(Kind::AnalogOutput, 1, 1001);
        let write = |o: &mut Object, v: Value, prio| o.write(PropertyRef::new(p::PRESENT_VALUE), &v, prio, 0.0);
        assert_eq!(pv(&ao), Value::Real(0.0));
        write(&mut ao, Value::Real(40.0), Some(10)).unwrap();
        write(&mut ao, Value::Real(80.0), Some(8)).unwrap();
        assert_eq!(pv(&ao), Value::Real(80.0));
        let ccp = ao.read(PropertyRef::new(p::CURRENT_COMMAND_PRIORITY), 0.0).unwrap();
        assert_eq!(ccp, Value::Unsigned(8));
        write(&mut ao, Value::Null, Some(8)).unwrap();
        assert_eq!(pv(&ao), Value::Real(40.0));
        write(&mut ao, Value::Null, Some(10)).unwrap();
        assert_eq!(pv(&ao), Value::Real(0.0));
        assert_eq!(ao.read(PropertyRef::new(p::CURRENT_COMMAND_PRIORITY), 0.0).unwrap(), Value::Null);
        // no priority means 16
        write(&mut ao, Value::Real(5.0), None).unwrap();
        assert_eq!(ao.read(PropertyRef::indexed(p::PRIORITY_ARRAY, 16), 0.0).unwrap(), Value::Real(5.0));
        assert_eq!(ao.read(PropertyRef::indexed(p::PRIORITY_ARRAY, 0), 0.0).unwrap(), Value::Unsigned(16));
        assert_eq!(ao.read(PropertyRef::indexed(p::PRIORITY_ARRAY, 17), 0.0), Err(INVALID_ARRAY_INDEX));
        assert_eq!(ao.read(PropertyRef::new(p::PRIORITY_ARRAY), 0.0).unwrap().elements().len(), 16);
        assert_eq!(write(&mut ao, Value::Real(5.0), Some(0)), Err(VALUE_OUT_OF_RANGE));
        assert_eq!(write(&mut ao, Value::Real(5.0), Some(17)), Err(VALUE_OUT_OF_RANGE));
        assert_eq!(write(&mut ao, Value::CharacterString("x".into()), Some(8)), Err(INVALID_DATA_TYPE));

        let mut bo = Object::new(Kind::BinaryOutput, 1, 1001);
        write(&mut bo, Value::Enumerated(1), Some(5)).unwrap();
        assert_eq!(pv(&bo), Value::Enumerated(1));
        bo.clear_priority_array();
        assert_eq!(pv(&bo), Value::Enumerated(0));
        assert_eq!(bo.read(PropertyRef::new(p::CURRENT_COMMAND_PRIORITY), 0.0).unwrap(), Value::Null);
        assert_eq!(write(&mut bo, Value::Enumerated(2), Some(5)), Err(VALUE_OUT_OF_RANGE));
    }

    #[test]
    fn write_rules_by_kind() {
        let pvref = PropertyRef::new(p::PRESENT_VALUE);
        let mut ai = Object::new(Kind::AnalogInput, 1, 1001);
        assert_eq!(ai.write(pvref, &Value::Real(1.0), None, 0.0), Err(WRITE_ACCESS_DENIED));
        ai.write(PropertyRef::new(p::OUT_OF_SERVICE), &Value::Boolean(true), None, 0.0).unwrap();
        ai.write(pvref, &Value::Real(1.0), None, 0.0).unwrap();
        assert_eq!(ai.read(pvref, 123.0).unwrap(), Value::Real(1.0));
        let flags = ai.read(PropertyRef::new(p::STATUS_FLAGS), 0.0).unwrap();
        assert_eq!(flags, Value::BitString(StatusFlags { out_of_service: true, ..Default::default() }.to_bits()));

        let mut av = Object::new(Kind::AnalogValue, 1, 1001);
        av.write(pvref, &Value::Real(12.5), Some(3), 0.0).unwrap();
        assert_eq!(pv(&av), Value::Real(12.5));
        assert_eq!(av.write(pvref, &Value::Null, None, 0.0), Err(INVALID_DATA_TYPE));
        assert_eq!(av.write(PropertyRef::new(p::OBJECT_NAME), &Value::Null, None, 0.0), Err(WRITE_ACCESS_DENIED));
        assert_eq!(av.write(PropertyRef::new(p::NUMBER_OF_STATES), &Value::Null, None, 0.0), Err(UNKNOWN_PROPERTY));
        assert_eq!(
            av.write(PropertyRef::indexed(p::PRESENT_VALUE, 1), &Value::Real(1.0), None, 0.0),
            Err(NOT_AN_ARRAY)
        );

        let mut msv = Object::new(Kind::MultiStateValue, 1, 1001);
        msv.write(pvref, &Value::Unsigned(3), None, 0.0).unwrap();
        assert_eq!(msv.write(pvref, &Value::Unsigned(4), None, 0.0), Err(VALUE_OUT_OF_RANGE));
        assert_eq!(msv.write(pvref, &Value::Unsigned(0), None, 0.0), Err(VALUE_OUT_OF_RANGE));
        assert_eq!(
            msv.read(PropertyRef::indexed(p::STATE_TEXT, 3), 0.0).unwrap(),
            Value::CharacterString("Manual".into())
        );

        let mut csv = Object::new(Kind::CharacterStringValue, 1, 1001);
        csv.write(pvref, &Value::CharacterString("hi".into()), None, 0.0).unwrap();
        assert_eq!(pv(&csv), Value::CharacterString("hi".into()));
        assert_eq!(csv.read(PropertyRef::new(p::UNITS), 0.0), Err(UNKNOWN_PROPERTY));
    }

    #[test]
    fn analog_inputs_drift_slowly_and_deterministically() {
        let ai = Object::new(Kind::AnalogInput, 1, 1001);
        let other = Object::new(Kind::AnalogInput, 2, 1001);
        let at = |o: &Object, t| o.present_value(t);
        assert_eq!(at(&ai, 10.0), at(&Object::new(Kind::AnalogInput, 1, 1001), 10.0));
        assert_ne!(at(&ai, 10.0), at(&other, 10.0));
        let (Pv::Real(a), Pv::Real(b)) = (at(&ai, 10.0), at(&ai, 11.0)) else { panic!("not real") };
        assert!((a - b).abs() < 0.1, "{a} -> {b}");
        assert!((18.0..=24.0).contains(&a));
    }

    #[test]
    fn property_lists_are_readable() {
        for kind in Kind::ALL {
            let o = Object::new(kind, 3, 1001);
            for &prop in kind.required().iter().chain(kind.optional()) {
                assert!(o.read(PropertyRef::new(prop), 1.0).is_ok(), "{kind:?} property {prop}");
            }
        }
    }
}
